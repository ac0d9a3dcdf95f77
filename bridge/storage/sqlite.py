"""SQLite implementation of ``ReadingStore``: one writer thread, WAL, batched durable commits.

Every write happens in one dedicated writer thread (``SqliteWriter``) with its own connection;
the event loop only puts work on a queue. Reads use a second connection in a one-thread
executor, so a long history query never delays a commit and the loop never waits on the disk.
WAL lets both run at once. ``flush()`` resolves after the commit that contains every row
submitted before it (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bridge.config.model import StorageSettings
from bridge.storage.model import ArchiveKind, ArchiveRecord, Reading, StorageError, TagClass
from bridge.storage.sqlite_writer import (
    SqliteWriter,
    StoreStats,
    connect_writer,
    from_micros,
    to_micros,
)
from bridge.tags.model import Quality

log = logging.getLogger(__name__)

T = TypeVar("T")


def _connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA query_only = 1")
    return conn


class SqliteReadingStore:
    """``ReadingStore`` on one SQLite file (see the module docstring for the threading)."""

    def __init__(self, path: str | Path, settings: StorageSettings | None = None) -> None:
        self._path = Path(path)
        self._settings = settings or StorageSettings()
        self.stats = StoreStats()
        self._writer: SqliteWriter | None = None
        self._thread: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._conns: list[sqlite3.Connection] = []  # [writer, reader] while open
        self._reader_conn: sqlite3.Connection | None = None
        self._closed_logged = False

    def __repr__(self) -> str:
        return f"SqliteReadingStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- life cycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the directory, the file and the schema; start the writer thread."""
        if self._writer is not None:
            return
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="storage-read")
        try:
            self._conns.append(await self._in_reader(connect_writer, self._path))
            self._reader_conn = await self._in_reader(_connect_reader, self._path)
            self._conns.append(self._reader_conn)
        except (sqlite3.Error, OSError, StorageError) as exc:
            await self._release()
            raise StorageError(f"cannot open the reading store {self._path}: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._writer = SqliteWriter(self._path, self._settings, self._conns[0], loop, self.stats)
        self._thread = threading.Thread(target=self._writer.run, name="storage-writer", daemon=True)
        self._thread.start()
        self._closed_logged = False
        log.info("reading store open: %s", self._path)

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread, close both connections."""
        if self._writer is None or self._thread is None:
            return
        self._writer.stop()
        thread, self._writer, self._thread = self._thread, None, None
        await self._in_reader(thread.join)
        await self._release()

    async def _release(self) -> None:
        reader, self._reader = self._reader, None
        conns, self._conns, self._reader_conn = self._conns, [], None
        if reader is None:
            return
        loop = asyncio.get_running_loop()
        for conn in conns:
            await loop.run_in_executor(reader, conn.close)
        reader.shutdown(wait=True)  # its one thread is idle now: this returns at once

    # -- writing (event loop side: queue only) ------------------------------------------------
    def submit(self, rows: Sequence[Reading], tag_class: TagClass = TagClass.INSTANT) -> None:
        """Queue readings; never blocks. Dropped (counted, logged once) if over the limit."""
        if rows and self._accepting(len(rows)):
            assert self._writer is not None
            self._writer.submit_readings(rows, tag_class)

    def submit_archive(self, records: Sequence[ArchiveRecord]) -> None:
        """Queue archive records; never blocks."""
        if records and self._accepting(len(records)):
            assert self._writer is not None
            self._writer.submit_archive(records)

    def _accepting(self, count: int) -> bool:
        if self._writer is not None:
            return True
        self.stats.rows_dropped += count
        if not self._closed_logged:
            self._closed_logged = True
            log.error("reading store %s is not open; dropping rows", self._path)
        return False

    async def flush(self) -> None:
        """Return when everything submitted so far is committed (durable)."""
        await self._call(lambda conn: None, check_lost=True)

    async def prune(self, now: datetime) -> int:
        """Delete rows older than their class's retention (also runs every prune_interval)."""
        writer = self._writer
        if writer is None:
            raise StorageError("the reading store is not open")
        return int(await writer.call(lambda conn: writer.prune(conn, now), check_lost=False))

    async def next_sequence(self, name: str) -> int:
        """Next value of a persistent counter, committed before it is returned."""

        def bump(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO sequence (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                (name,),
            ).fetchone()
            return int(row[0])

        return int(await self._call(bump))

    async def _call(self, fn: Callable[[sqlite3.Connection], Any], check_lost: bool = False) -> Any:
        if self._writer is None:
            raise StorageError("the reading store is not open")
        return await self._writer.call(fn, check_lost)

    # -- reading (one-thread executor, own connection) ----------------------------------------
    async def _in_reader(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise StorageError("the reading store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        def run() -> list[Any]:
            assert self._reader_conn is not None
            return self._reader_conn.execute(sql, params).fetchall()

        try:
            return await self._in_reader(run)
        except sqlite3.Error as exc:
            raise StorageError(f"reading store {self._path}: {exc}") from exc

    async def keys(self) -> list[str]:
        """Every tag key with at least one stored reading, sorted."""
        rows = await self._query(
            "SELECT key FROM tag WHERE EXISTS (SELECT 1 FROM reading WHERE tag_id = tag.id) ORDER BY key",
            (),
        )
        return [str(r[0]) for r in rows]

    async def last_values(self, keys: Iterable[str]) -> dict[str, Reading]:
        """Newest stored reading of each key (one indexed lookup per key)."""
        wanted = list(keys)

        def run() -> dict[str, Reading]:
            assert self._reader_conn is not None
            found: dict[str, Reading] = {}
            for key in wanted:
                row = self._reader_conn.execute(
                    "SELECT r.ts, r.value, r.quality FROM reading r JOIN tag t ON t.id = r.tag_id "
                    "WHERE t.key = ? ORDER BY r.ts DESC LIMIT 1",
                    (key,),
                ).fetchone()
                if row is not None:
                    found[key] = Reading(key, row[1], Quality(row[2]), from_micros(row[0]))
            return found

        try:
            return await self._in_reader(run)
        except sqlite3.Error as exc:
            raise StorageError(f"reading store {self._path}: {exc}") from exc

    async def history(
        self, key: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        """Readings of ``key`` with ``start <= source_time < end``, oldest first."""
        rows = await self._query(
            "SELECT r.ts, r.value, r.quality FROM reading r JOIN tag t ON t.id = r.tag_id "
            "WHERE t.key = ? AND r.ts >= ? AND r.ts < ? ORDER BY r.ts LIMIT ?",
            (key, to_micros(start), to_micros(end), -1 if limit is None else limit),
        )
        return [Reading(key, r[1], Quality(r[2]), from_micros(r[0])) for r in rows]

    async def archive(
        self,
        meter: str,
        kind: ArchiveKind,
        start: datetime,
        end: datetime,
        channel: str | None = None,
    ) -> list[ArchiveRecord]:
        """Archive records of a meter with ``start <= timestamp < end``, oldest first."""
        sql = "SELECT channel, ts, value, status FROM archive WHERE meter = ? AND kind = ? "
        params: list[Any] = [meter, kind.value]
        if channel is not None:
            sql += "AND channel = ? "
            params.append(channel)
        sql += "AND ts >= ? AND ts < ? ORDER BY ts, channel"
        params += [to_micros(start), to_micros(end)]
        rows = await self._query(sql, params)
        return [ArchiveRecord(meter, kind, r[0], from_micros(r[1]), r[2], r[3]) for r in rows]
