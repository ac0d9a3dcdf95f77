"""What is stored: readings of tags and archive records, and the storage-agnostic interface.

``ReadingStore`` is the contract between the bridge and a database. ``SqliteReadingStore``
(``bridge/storage/sqlite.py``) implements it; a PostgreSQL/TimescaleDB store can replace it
without touching the recorder or the export command.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.tags.model import Quality, Scalar


class StorageError(Exception):
    """A storage operation failed (the database could not be opened, written or read)."""


class TagClass(enum.Enum):
    """Retention class of stored data (each class has its own retention period)."""

    ENERGY = "energy"  # energy totals, daily snapshots, 30-minute profile values
    INSTANT = "instant"  # instantaneous measurements: voltage, current, power, ...
    EVENTS = "events"  # meter journal events


class ArchiveKind(enum.Enum):
    """Kinds of archive records read from a meter's own archives (protocol notes §4)."""

    DAILY = "daily"  # FUNC 0C: energy totals at the start of a day
    PROFILE = "profile"  # FUNC 0D: energy of one 30-minute interval
    EVENT = "event"  # FUNC 0B: one journal record

    @property
    def tag_class(self) -> TagClass:
        """The retention class of this kind."""
        return TagClass.EVENTS if self is ArchiveKind.EVENT else TagClass.ENERGY


#: profile channels: A+ (active import), A− (active export), R+ (reactive import), R− (export)
PROFILE_CHANNELS: tuple[str, ...] = ("A+", "A-", "R+", "R-")


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored value of a tag, with the meter's read time (timezone-aware UTC)."""

    key: str
    value: Scalar
    quality: Quality
    source_time: datetime


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One record of a meter archive; (meter, kind, channel, timestamp) is unique.

    ``channel`` is a profile channel (``PROFILE_CHANNELS``) for profile records, a register name
    for daily snapshots, and the journal's name or number for events. ``timestamp`` is the start
    of the interval (profile), the start of the day (daily) or the event time (events), as
    timezone-aware UTC. ``status`` carries the meter's flags (0 = nothing to report).
    """

    meter: str
    kind: ArchiveKind
    channel: str
    timestamp: datetime
    value: Scalar
    status: int = 0


class ReadingStore(Protocol):
    """A durable store of readings and archive records.

    ``submit`` and ``submit_archive`` only queue (they never block the event loop); ``flush``
    returns when everything submitted before it is durable ("acknowledged as stored").
    Submitting an already stored (key, source_time) reading or (meter, kind, channel, timestamp)
    archive record again is ignored, so a second backfill inserts no duplicates.
    """

    async def open(self) -> None:
        """Open (and create or migrate) the database; raises StorageError."""

    async def close(self) -> None:
        """Write everything still queued, then release every resource."""

    def submit(self, rows: Sequence[Reading], tag_class: TagClass = TagClass.INSTANT) -> None:
        """Queue readings of one retention class for writing."""

    def submit_archive(self, records: Sequence[ArchiveRecord]) -> None:
        """Queue archive records for writing."""

    async def flush(self) -> None:
        """Return when everything submitted so far is durable; raises StorageError if lost."""

    async def keys(self) -> list[str]:
        """Every tag key that has stored readings."""

    async def last_values(self, keys: Iterable[str]) -> dict[str, Reading]:
        """The newest stored reading of each key (keys never stored are absent)."""

    async def history(
        self, key: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        """Readings of ``key`` with ``start <= source_time < end``, oldest first."""

    async def archive(
        self,
        meter: str,
        kind: ArchiveKind,
        start: datetime,
        end: datetime,
        channel: str | None = None,
    ) -> list[ArchiveRecord]:
        """Archive records of a meter with ``start <= timestamp < end``, oldest first."""

    async def prune(self, now: datetime) -> int:
        """Delete rows older than their class's retention; returns the number deleted."""

    async def next_sequence(self, name: str) -> int:
        """The next number of a persistent counter (1, 2, …), e.g. 80020 message numbers."""
