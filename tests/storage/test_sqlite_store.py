"""SqliteReadingStore: restart, history, duplicates, retention, batching, errors, threads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config.model import StorageSettings
from bridge.storage import (
    ArchiveKind,
    ArchiveRecord,
    Reading,
    SqliteReadingStore,
    StorageError,
    TagClass,
)
from bridge.tags import Quality

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

T0 = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=UTC)


def reading(key: str, value: object, at: datetime) -> Reading:
    return Reading(key, value, Quality.Good, at)  # type: ignore[arg-type]


async def test_values_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "r.sqlite3"
    first = SqliteReadingStore(path)
    await first.open()
    first.submit(
        [reading("m1.ap", 100.5, T0), reading("m1.ap", 101.25, T0 + timedelta(minutes=1))], TagClass.ENERGY
    )
    first.submit([reading("m1.serial", "049932", T0), reading("m1.state", 7, T0)])
    await first.flush()
    await first.close()

    second = SqliteReadingStore(path)
    await second.open()
    try:
        last = await second.last_values(["m1.ap", "m1.serial", "m1.state", "m1.never"])
    finally:
        await second.close()
    assert set(last) == {"m1.ap", "m1.serial", "m1.state"}
    assert last["m1.ap"] == reading("m1.ap", 101.25, T0 + timedelta(minutes=1))
    assert last["m1.ap"].source_time.tzinfo is not None
    assert last["m1.serial"].value == "049932"  # text stays text
    assert last["m1.state"].value == 7 and isinstance(last["m1.state"].value, int)


async def test_close_writes_what_was_queued(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    s = SqliteReadingStore(path, StorageSettings(flush_interval=60.0, batch_rows=10_000))
    await s.open()
    s.submit([reading("k", float(i), T0 + timedelta(seconds=i)) for i in range(50)])
    await s.close()  # no flush(): close commits
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM reading").fetchone()[0] == 50


async def test_history_range_order_and_limit(store: SqliteReadingStore) -> None:
    rows = [reading("m1.u", 230.0 + i, T0 + timedelta(minutes=i)) for i in range(10)]
    store.submit(list(reversed(rows)))
    store.submit([reading("m1.other", 1.0, T0)])
    await store.flush()
    got = await store.history("m1.u", T0 + timedelta(minutes=2), T0 + timedelta(minutes=7))
    assert [r.value for r in got] == [232.0, 233.0, 234.0, 235.0, 236.0]  # end is exclusive
    assert await store.history("m1.u", T0, T0 + timedelta(hours=1), limit=3) == rows[:3]
    assert await store.history("m1.none", T0, T0 + timedelta(hours=1)) == []
    assert await store.keys() == ["m1.other", "m1.u"]


async def test_duplicates_are_ignored(store: SqliteReadingStore) -> None:
    rows = [reading("m1.ap", float(i), T0 + timedelta(minutes=i)) for i in range(5)]
    records = [
        ArchiveRecord("m1", ArchiveKind.PROFILE, ch, T0 + timedelta(minutes=30 * i), 0.5 * i)
        for i in range(4)
        for ch in ("A+", "R+")
    ]
    for _ in range(2):  # a second backfill of the same period
        store.submit(rows, TagClass.ENERGY)
        store.submit_archive(records)
        await store.flush()
    # a re-read with a different value for a stored instant does not replace or duplicate it
    store.submit([reading("m1.ap", 999.0, T0)], TagClass.ENERGY)
    store.submit_archive([ArchiveRecord("m1", ArchiveKind.PROFILE, "A+", T0, 999.0)])
    await store.flush()
    assert await store.history("m1.ap", T0, T0 + timedelta(days=1)) == rows
    got = await store.archive("m1", ArchiveKind.PROFILE, T0, T0 + timedelta(days=1))
    assert sorted(got, key=lambda r: (r.timestamp, r.channel)) == sorted(
        records, key=lambda r: (r.timestamp, r.channel)
    )
    only_a = await store.archive("m1", ArchiveKind.PROFILE, T0, T0 + timedelta(days=1), "A+")
    assert [r.value for r in only_a] == [0.0, 0.5, 1.0, 1.5]


async def test_retention_per_class(tmp_path: Path) -> None:
    settings = StorageSettings(
        retention_days=30,
        retention_energy_days=400,
        retention_instant_days=7,
        prune_interval=3600.0,
    )
    s = SqliteReadingStore(tmp_path / "r.sqlite3", settings)
    await s.open()
    try:
        now = T0
        ages = (1, 6, 8, 29, 31, 399, 401)
        s.submit([reading("m1.ap", float(d), now - timedelta(days=d)) for d in ages], TagClass.ENERGY)
        s.submit([reading("m1.u", float(d), now - timedelta(days=d)) for d in ages], TagClass.INSTANT)
        s.submit_archive(
            [ArchiveRecord("m1", ArchiveKind.EVENT, "power", now - timedelta(days=d), d) for d in ages]
            + [ArchiveRecord("m1", ArchiveKind.DAILY, "A+", now - timedelta(days=d), d) for d in ages]
        )
        await s.flush()
        deleted = await s.prune(now)
        span = (now - timedelta(days=1000), now + timedelta(days=1))

        async def kept(key: str) -> list[object]:
            return [r.value for r in await s.history(key, *span)]

        assert await kept("m1.ap") == [399.0, 31.0, 29.0, 8.0, 6.0, 1.0]
        assert await kept("m1.u") == [6.0, 1.0]
        events = await s.archive("m1", ArchiveKind.EVENT, *span)
        assert [r.value for r in events] == [29, 8, 6, 1]  # events: the default, 30 days
        daily = await s.archive("m1", ArchiveKind.DAILY, *span)
        assert [r.value for r in daily] == [399, 31, 29, 8, 6, 1]  # archives are energy
        assert deleted == 1 + 5 + 3 + 1
        assert await s.prune(now) == 0
    finally:
        await s.close()


async def test_rows_commit_after_flush_interval_without_flush(tmp_path: Path) -> None:
    s = SqliteReadingStore(tmp_path / "r.sqlite3", StorageSettings(flush_interval=0.05))
    await s.open()
    try:
        s.submit([reading("k", 1.0, T0)])
        found: list[Reading] = []
        for _ in range(250):  # bounded wait (5 s) for the timed commit; no flush() here
            found = await s.history("k", T0, T0 + timedelta(seconds=1))
            if found:
                break
            await asyncio.sleep(0.02)
        assert found == [reading("k", 1.0, T0)]
        assert s.stats.commits == 1
    finally:
        await s.close()


async def test_full_batch_commits_at_once(tmp_path: Path) -> None:
    s = SqliteReadingStore(tmp_path / "r.sqlite3", StorageSettings(flush_interval=3600.0, batch_rows=10))
    await s.open()
    try:
        for i in range(3):
            s.submit([reading("k", float(j), T0 + timedelta(seconds=10 * i + j)) for j in range(10)])
        await s.flush()
        assert s.stats.commits == 3 and s.stats.rows_written == 30
    finally:
        await s.close()


async def test_flush_reports_rows_that_could_not_be_written(store: SqliteReadingStore) -> None:
    naive = datetime(2026, 11, 20, 8, 0)  # a bug upstream: storage refuses naive times
    store.submit([reading("k", 1.0, naive)])
    with pytest.raises(StorageError, match="1 rows could not be written"):
        await store.flush()
    store.submit([reading("k", 2.0, T0)])
    await store.flush()  # the next batch is fine again
    assert store.stats.rows_lost == 1 and store.stats.rows_written == 1


async def test_queue_limit_drops_and_counts(tmp_path: Path) -> None:
    s = SqliteReadingStore(tmp_path / "r.sqlite3", StorageSettings(max_pending_rows=5))
    await s.open()
    try:
        s.submit([reading("k", float(i), T0 + timedelta(seconds=i)) for i in range(6)])
        assert s.stats.rows_dropped == 6
        s.submit([reading("k", 1.0, T0)])
        await s.flush()
        assert len(await s.history("k", T0, T0 + timedelta(days=1))) == 1
    finally:
        await s.close()


async def test_submit_after_close_is_dropped_not_raised(tmp_path: Path) -> None:
    s = SqliteReadingStore(tmp_path / "r.sqlite3")
    await s.open()
    await s.close()
    s.submit([reading("k", 1.0, T0)])
    assert s.stats.rows_dropped == 1
    with pytest.raises(StorageError):
        await s.flush()
    with pytest.raises(StorageError):
        await s.last_values(["k"])


async def test_sequence_persists(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    for expected in ([1, 2], [3]):
        s = SqliteReadingStore(path)
        await s.open()
        try:
            got = [await s.next_sequence("80020") for _ in expected]
            assert got == expected
        finally:
            await s.close()


async def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = SqliteReadingStore(blocker / "r.sqlite3")
    with pytest.raises(StorageError, match="cannot open the reading store"):
        await s.open()
    assert not [t for t in threading.enumerate() if t.name.startswith("storage")]


async def test_database_is_wal_with_full_sync(store: SqliteReadingStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "readings.sqlite3" in repr(store)
