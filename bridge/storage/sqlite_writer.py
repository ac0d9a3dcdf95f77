"""The SQLite writer thread: schema, queued rows, batched durable commits, retention.

``SqliteWriter`` owns the only write connection. The event loop calls ``admit``/``put``/``call``
(never blocking); ``run`` is the thread's body. Durability: WAL with ``synchronous=FULL`` syncs the
WAL on every commit, so a commit that returned survives a power loss (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config.model import StorageSettings
from bridge.storage.model import ArchiveKind, ArchiveRecord, Reading, StorageError, TagClass

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, class TEXT NOT NULL);
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


def connect_writer(path: Path) -> sqlite3.Connection:
    """Open the write connection: create the folder and schema, WAL, synchronous=FULL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
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


@dataclass
class StoreStats:
    """Counters of the writer (for diagnostics and metrics)."""

    rows_written: int = 0
    rows_lost: int = 0  # a commit failed (disk full, I/O error): the batch is gone
    rows_dropped: int = 0  # the queue was over ``max_pending_rows`` or the store was closed
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
    check_lost: bool  # fail if rows were lost since the last acknowledged flush


@dataclass
class _Batch:
    readings: list[_Rows] = field(default_factory=list)
    archive: list[ArchiveRecord] = field(default_factory=list)
    size: int = 0


_STOP = object()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWriter:
    """Batches queued rows into commits in its own thread (``run``); see the module docstring."""

    def __init__(
        self,
        path: Path,
        settings: StorageSettings,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        stats: StoreStats,
    ) -> None:
        self._path = path
        self._settings = settings
        self._conn = conn
        self._loop = loop
        self.stats = stats
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._overflowing = False
        self._failing = False
        self._lost_since_ack = 0
        self._tag_ids: dict[str, tuple[int, TagClass]] = {}

    # -- event loop side ----------------------------------------------------------------------
    def submit_readings(self, rows: Sequence[Reading], tag_class: TagClass) -> None:
        """Queue readings of one retention class."""
        self._enqueue(_Rows(tuple(rows), tag_class), len(rows))

    def submit_archive(self, records: Sequence[ArchiveRecord]) -> None:
        """Queue archive records."""
        self._enqueue(tuple(records), len(records))

    def _enqueue(self, item: _Rows | tuple[ArchiveRecord, ...], count: int) -> None:
        # over ``max_pending_rows`` waiting rows: drop, count, log once until writing catches up
        with self._lock:
            admitted = self._pending + count <= self._settings.max_pending_rows
            if admitted:
                self._pending += count
            else:
                self.stats.rows_dropped += count
            first_drop = not admitted and not self._overflowing
            self._overflowing = self._overflowing or not admitted
        if admitted:
            self._queue.put(item)
        elif first_drop:
            log.error(
                "reading store %s: more than %d rows waiting to be written; dropping new rows",
                self._path,
                self._settings.max_pending_rows,
            )

    def call(self, fn: Callable[[sqlite3.Connection], Any], check_lost: bool) -> asyncio.Future[Any]:
        """Run ``fn(conn)`` in the writer thread after everything queued before it is committed."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Call(fn, future, check_lost))
        return future

    def stop(self) -> None:
        """Ask ``run`` to commit what is queued and return."""
        self._queue.put(_STOP)

    # -- the writer thread --------------------------------------------------------------------
    def run(self) -> None:
        """The thread's body: commit every ``batch_rows`` rows, ``flush_interval`` or call."""
        batch = _Batch()
        deadline: float | None = None
        next_prune = time.monotonic() + self._settings.prune_interval
        while True:
            wait = (next_prune if deadline is None else min(next_prune, deadline)) - time.monotonic()
            try:
                item = self._queue.get(timeout=max(wait, 0.0))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._commit(batch)
                return
            if isinstance(item, _Call):
                self._commit(batch)
                self._run_call(item)
            elif item is not None:
                self._add(batch, item)
                if deadline is None:
                    deadline = time.monotonic() + self._settings.flush_interval
            now = time.monotonic()
            if batch.size >= self._settings.batch_rows or (deadline is not None and now >= deadline):
                self._commit(batch)
            if now >= next_prune:
                self._commit(batch)
                self._scheduled_prune()
                next_prune = time.monotonic() + self._settings.prune_interval
            if not batch.size:
                deadline = None

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
            caught_up = self._overflowing and self._pending <= self._settings.max_pending_rows // 2
            if caught_up:
                self._overflowing = False
        if caught_up:
            log.warning("reading store %s: writing caught up", self._path)

    def _commit(self, batch: _Batch) -> None:
        if not batch.size:
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rows in batch.readings:
                conn.executemany(
                    "INSERT OR IGNORE INTO reading (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)",
                    [
                        (
                            self._tag_id(r.key, rows.tag_class),
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
        batch.readings.clear()
        batch.archive.clear()
        batch.size = 0

    def _tag_id(self, key: str, tag_class: TagClass) -> int:
        known = self._tag_ids.get(key)
        if known is not None and known[1] is tag_class:
            return known[0]
        row = self._conn.execute(
            "INSERT INTO tag (key, class) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET class = excluded.class RETURNING id",
            (key, tag_class.value),
        ).fetchone()
        self._tag_ids[key] = (int(row[0]), tag_class)
        return int(row[0])

    def _run_call(self, call: _Call) -> None:
        result: Any = None
        error: BaseException | None = None
        if call.check_lost and self._lost_since_ack:
            error = StorageError(f"{self._lost_since_ack} rows could not be written to {self._path}")
            self._lost_since_ack = 0
        else:
            try:
                result = call.fn(self._conn)
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                error = StorageError(f"reading store {self._path}: {exc}")
            except Exception as exc:  # handed to the awaiting caller, not swallowed
                error = exc
        try:
            self._loop.call_soon_threadsafe(_settle, call.future, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    # -- retention ----------------------------------------------------------------------------
    def _retention_days(self, tag_class: TagClass) -> int:
        s = self._settings
        days = {
            TagClass.ENERGY: s.retention_energy_days,
            TagClass.INSTANT: s.retention_instant_days,
            TagClass.EVENTS: s.retention_events_days,
        }[tag_class]
        return s.retention_days if days is None else days

    def prune(self, conn: sqlite3.Connection, now: datetime) -> int:
        """Delete rows older than their class's retention in one transaction; returns the count."""
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        for tag_class in TagClass:
            days = self._retention_days(tag_class)
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

    def _scheduled_prune(self) -> None:
        try:
            deleted = self.prune(self._conn, datetime.now(UTC))
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            log.error("reading store %s: retention run failed: %s", self._path, exc)
        else:
            if deleted:
                log.info("reading store %s: retention removed %d old rows", self._path, deleted)
