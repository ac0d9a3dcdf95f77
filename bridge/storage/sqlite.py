"""SQLite implementation of ``ReadingStore``: one writer thread, WAL, batched durable commits.

Every write happens in one dedicated writer thread with its own connection; the event loop only
puts work on a queue. Reads use a second connection in a one-thread executor, so a long history
query never delays a commit and the loop never waits on the disk. WAL lets both run at once.

Durability: ``synchronous=FULL`` in WAL mode syncs the WAL file on every commit, so a commit that
returned survives a power loss (``NORMAL`` would only survive a crash of the process). ``flush()``
resolves after the commit that contains every row submitted before it (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bridge.config.model import StorageSettings
from bridge.storage.model import ArchiveKind, ArchiveRecord, Reading, StorageError, TagClass
from bridge.tags.model import Quality

log = logging.getLogger(__name__)

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    class TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reading (
    tag_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    quality INTEGER NOT NULL,
    PRIMARY KEY (tag_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive (
    meter TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value,
    status INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meter, kind, channel, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS archive_kind_ts ON archive (kind, ts);
CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (the ``ts`` columns)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: storage times must be timezone-aware")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """Aware UTC datetime from a ``ts`` column."""
    return _EPOCH + timedelta(microseconds=micros)


@dataclass
class StoreStats:
    """Counters of the writer (for diagnostics and metrics)."""

    rows_written: int = 0
    rows_lost: int = 0  # a commit failed (disk full, I/O error): the batch is gone
    rows_dropped: int = 0  # the queue was over ``max_pending_rows`` or the store closed
    commits: int = 0
    pruned: int = 0


@dataclass(frozen=True, slots=True)
class _Rows:
    readings: Sequence[Reading]
    tag_class: TagClass


@dataclass(frozen=True, slots=True)
class _Call:
    """Run ``fn(conn)`` in the writer thread after committing what is pending."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    check_lost: bool = False  # fail if rows were lost since the last acknowledged flush


@dataclass
class _Batch:
    readings: list[_Rows] = field(default_factory=list)
    archive: list[ArchiveRecord] = field(default_factory=list)
    size: int = 0

    def clear(self) -> None:
        self.readings.clear()
        self.archive.clear()
        self.size = 0


_STOP = object()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteReadingStore:
    """``ReadingStore`` on one SQLite file (see the module docstring for the threading)."""

    def __init__(self, path: str | Path, settings: StorageSettings | None = None) -> None:
        self._path = Path(path)
        self._settings = settings or StorageSettings()
        self.stats = StoreStats()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._overflowing = False
        self._failing = False
        self._lost_since_ack = 0
        self._tag_ids: dict[str, tuple[int, TagClass]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._accepting = False

    def __repr__(self) -> str:
        return f"SqliteReadingStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- life cycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the directory, the file and the schema; start the writer thread."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="storage-read")
        try:
            self._writer_conn = await self._in_reader(self._connect_writer)
            self._reader_conn = await self._in_reader(self._connect_reader)
        except (sqlite3.Error, OSError, StorageError) as exc:
            await self._release_connections()
            raise StorageError(f"cannot open the reading store {self._path}: {exc}") from exc
        self._thread = threading.Thread(target=self._writer_loop, name="storage-writer", daemon=True)
        self._accepting = True
        self._thread.start()
        log.info("reading store open: %s", self._path)

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread, close both connections."""
        if self._thread is None:
            return
        self._accepting = False
        self._queue.put(_STOP)
        thread, self._thread = self._thread, None
        await self._in_reader(thread.join)
        await self._release_connections()

    async def _release_connections(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        conns = [c for c in (self._reader_conn, self._writer_conn) if c is not None]
        self._reader_conn = self._writer_conn = None
        loop = asyncio.get_running_loop()
        for conn in conns:
            await loop.run_in_executor(reader, conn.close)
        reader.shutdown(wait=True)  # its one thread is idle now: this returns at once

    def _connect_writer(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"the file system does not support WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous = FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(f"schema version {version} is newer than this bridge's")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA query_only = 1")
        return conn

    # -- writing (event loop side: queue only) ------------------------------------------------
    def submit(self, rows: Sequence[Reading], tag_class: TagClass = TagClass.INSTANT) -> None:
        """Queue readings; never blocks. Dropped (counted, logged once) if over the limit."""
        if rows and self._admit(len(rows)):
            self._queue.put(_Rows(tuple(rows), tag_class))

    def submit_archive(self, records: Sequence[ArchiveRecord]) -> None:
        """Queue archive records; never blocks."""
        if records and self._admit(len(records)):
            self._queue.put(tuple(records))

    def _admit(self, count: int) -> bool:
        with self._lock:
            if self._accepting and self._pending + count <= self._settings.max_pending_rows:
                self._pending += count
                return True
            self.stats.rows_dropped += count
            if self._overflowing:
                return False
            self._overflowing = True
        if self._accepting:
            log.error(
                "reading store %s: more than %d rows waiting to be written; dropping new rows",
                self._path,
                self._settings.max_pending_rows,
            )
        else:
            log.error("reading store %s is not open; dropping rows", self._path)
        return False

    async def flush(self) -> None:
        """Return when everything submitted so far is committed (durable)."""
        await self._call(lambda conn: None, check_lost=True)

    async def prune(self, now: datetime) -> int:
        """Delete rows older than their class's retention (also runs every prune_interval)."""
        return int(await self._call(lambda conn: self._prune(conn, now)))

    async def next_sequence(self, name: str) -> int:
        """Next value of a persistent counter, committed before it is returned."""

        def bump(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO sequence (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                (name,),
            ).fetchone()
            return int(row[0])

        return await self._call(bump)

    async def _call(self, fn: Callable[[sqlite3.Connection], T], check_lost: bool = False) -> T:
        if self._thread is None or self._loop is None:
            raise StorageError("the reading store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Call(fn, future, check_lost))
        return await future

    # -- the writer thread --------------------------------------------------------------------
    def _writer_loop(self) -> None:
        assert self._writer_conn is not None
        conn = self._writer_conn
        batch = _Batch()
        deadline: float | None = None
        next_prune = time.monotonic() + self._settings.prune_interval
        while True:
            now = time.monotonic()
            wait = next_prune - now if deadline is None else min(next_prune, deadline) - now
            try:
                item = self._queue.get(timeout=max(wait, 0.0))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._commit(conn, batch)
                return
            if isinstance(item, _Call):
                self._commit(conn, batch)
                deadline = None
                self._run_call(conn, item)
            elif item is not None:
                self._add(batch, item)
                if deadline is None:
                    deadline = time.monotonic() + self._settings.flush_interval
            now = time.monotonic()
            if batch.size >= self._settings.batch_rows or (deadline is not None and now >= deadline):
                self._commit(conn, batch)
                deadline = None
            if now >= next_prune:
                self._commit(conn, batch)
                deadline = None
                self._scheduled_prune(conn)
                next_prune = time.monotonic() + self._settings.prune_interval

    def _add(self, batch: _Batch, item: object) -> None:
        if isinstance(item, _Rows):
            batch.readings.append(item)
            count = len(item.readings)
        else:
            assert isinstance(item, tuple)
            batch.archive.extend(item)
            count = len(item)
        batch.size += count
        with self._lock:
            self._pending -= count
            if self._overflowing and self._pending <= self._settings.max_pending_rows // 2:
                self._overflowing = False
                if self._accepting:
                    log.warning("reading store %s: writing caught up", self._path)

    def _commit(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        if not batch.size:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rows in batch.readings:
                conn.executemany(
                    "INSERT OR IGNORE INTO reading (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)",
                    [
                        (
                            self._tag_id(conn, r.key, rows.tag_class),
                            to_micros(r.source_time),
                            r.value,
                            r.quality.status_code,
                        )
                        for r in rows.readings
                    ],
                )
            conn.executemany(
                "INSERT OR IGNORE INTO archive (meter, kind, channel, ts, value, status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (a.meter, a.kind.value, a.channel, to_micros(a.timestamp), a.value, a.status)
                    for a in batch.archive
                ],
            )
            conn.execute("COMMIT")
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._tag_ids.clear()  # ids created in the rolled-back transaction are gone
            self.stats.rows_lost += batch.size
            self._lost_since_ack += batch.size
            if not self._failing:
                self._failing = True
                log.error("reading store %s: a write failed, rows lost: %s", self._path, exc)
        else:
            self.stats.rows_written += batch.size
            self.stats.commits += 1
            if self._failing:
                self._failing = False
                log.warning("reading store %s: writes succeed again", self._path)
        batch.clear()

    def _tag_id(self, conn: sqlite3.Connection, key: str, tag_class: TagClass) -> int:
        known = self._tag_ids.get(key)
        if known is not None and known[1] is tag_class:
            return known[0]
        row = conn.execute(
            "INSERT INTO tag (key, class) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET class = excluded.class RETURNING id",
            (key, tag_class.value),
        ).fetchone()
        self._tag_ids[key] = (int(row[0]), tag_class)
        return int(row[0])

    def _run_call(self, conn: sqlite3.Connection, call: _Call) -> None:
        result: Any = None
        error: BaseException | None = None
        if call.check_lost and self._lost_since_ack:
            error = StorageError(f"{self._lost_since_ack} rows could not be written to {self._path}")
            self._lost_since_ack = 0
        else:
            try:
                result = call.fn(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                error = StorageError(f"reading store {self._path}: {exc}")
            except Exception as exc:  # handed to the awaiting caller, not swallowed
                error = exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_settle, call.future, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _retention(self, tag_class: TagClass) -> int:
        s = self._settings
        days = {
            TagClass.ENERGY: s.retention_energy_days,
            TagClass.INSTANT: s.retention_instant_days,
            TagClass.EVENTS: s.retention_events_days,
        }[tag_class]
        return s.retention_days if days is None else days

    def _prune(self, conn: sqlite3.Connection, now: datetime) -> int:
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        for tag_class in TagClass:
            days = self._retention(tag_class)
            if days <= 0:  # keep forever
                continue
            cutoff = to_micros(now - timedelta(days=days))
            deleted += conn.execute(
                "DELETE FROM reading WHERE tag_id IN (SELECT id FROM tag WHERE class = ?) AND ts < ?",
                (tag_class.value, cutoff),
            ).rowcount
            kinds = [k.value for k in ArchiveKind if k.tag_class is tag_class]
            deleted += conn.execute(
                f"DELETE FROM archive WHERE kind IN ({', '.join('?' * len(kinds))}) AND ts < ?",
                (*kinds, cutoff),
            ).rowcount
        conn.execute("COMMIT")
        self.stats.pruned += deleted
        return deleted

    def _scheduled_prune(self, conn: sqlite3.Connection) -> None:
        try:
            deleted = self._prune(conn, datetime.now(UTC))
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("reading store %s: retention run failed: %s", self._path, exc)
        else:
            if deleted:
                log.info("reading store %s: retention removed %d old rows", self._path, deleted)

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
