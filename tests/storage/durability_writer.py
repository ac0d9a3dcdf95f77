"""Subprocess for test_durability: writes bursts through the real store, printing each ack.

Usage: python durability_writer.py DB_PATH. Prints ``ACK <n>`` after each flush() that
acknowledged the first n rows; runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from bridge.config.model import StorageSettings
from bridge.storage import Reading, SqliteReadingStore, TagClass
from bridge.tags import Quality

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def main(path: str) -> None:
    store = SqliteReadingStore(path, StorageSettings(batch_rows=50, flush_interval=0.01))
    await store.open()
    submitted = 0
    while True:
        for _ in range(3):  # a burst: some rows are queued or committing when the kill comes
            rows = [
                Reading(
                    f"m{i % 7}.ap", float(submitted + i), Quality.Good, T0 + timedelta(seconds=submitted + i)
                )
                for i in range(40)
            ]
            store.submit(rows, TagClass.ENERGY)
            submitted += len(rows)
        acknowledged = submitted
        await store.flush()
        print(f"ACK {acknowledged}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
