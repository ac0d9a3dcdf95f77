"""Meter archive records as tags: the latest daily and 30-minute profile record of each meter.

Every meter whose archives are read (``<archives>``, with ``<storage>`` enabled) gets, beside its
mapped tags, one tag per daily-record channel (``<meter>.daily_<register>``, e.g.
``m1.daily_energy_active_import_total``) and one per profile channel
(``<meter>.profile_energy_active_import`` … for A+ A− R+ R−). Their value in the TagStore is the
newest stored record, with the record's time as ``source_time`` (the start of the day, the start of
the half-hour); their history is the archive itself (``bridge/publishers/opcua_history.py``).

``ArchiveTagFeeder`` writes these values. It learns of new records through ``ArchiveTap``, a
``ReadingStore`` that forwards everything to the real store and shows the feeder every batch
given to ``submit_archive``; on start it loads the newest stored record of each tag. It writes on
the event loop, like polling, so the TagStore keeps a single writer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.config.model import SiteMapping
from bridge.storage.model import (
    PROFILE_CHANNELS,
    ArchiveKind,
    ArchiveRecord,
    Reading,
    ReadingStore,
    StorageError,
    TagClass,
)
from bridge.tags.model import Quality, TagValue
from bridge.tags.store import TagStore

log = logging.getLogger(__name__)

#: profile channel → tag name (``<meter>.<name>``) and unit
PROFILE_TAGS: dict[str, tuple[str, str]] = {
    "A+": ("profile_energy_active_import", "kWh"),
    "A-": ("profile_energy_active_export", "kWh"),
    "R+": ("profile_energy_reactive_import", "kvarh"),
    "R-": ("profile_energy_reactive_export", "kvarh"),
}
_PROFILE_WORDS = {
    "A+": "active energy import",
    "A-": "active energy export",
    "R+": "reactive energy import",
    "R-": "reactive energy export",
}
#: how far back the newest record is looked for on start, widest last
_LOOKBACK = (timedelta(days=2), timedelta(days=45), timedelta(days=3700))
_FAR_FUTURE = datetime(3000, 1, 1, tzinfo=UTC)


def daily_tag_name(register: str) -> str:
    """Tag name of a daily-record channel (a register name)."""
    return f"daily_{register}"


@dataclass(frozen=True, slots=True)
class ArchiveTag:
    """A tag whose value is the newest archive record of one meter, kind and channel."""

    key: str  # TagStore key, "<meter>.<name>"
    meter: str
    name: str
    kind: ArchiveKind
    channel: str  # ArchiveRecord.channel
    unit: str
    description: str


def archive_tags(mapping: SiteMapping) -> list[ArchiveTag]:
    """The archive tags of a mapping, in meter order (none without ``<storage enabled>``).

    A name already used by a mapped tag of the same meter stays the mapped tag's; the archive
    tag is left out (``colliding_archive_tags`` names them).
    """
    mapped = {t.key for t in mapping.tags}
    return [t for t in _candidates(mapping) if t.key not in mapped]


def colliding_archive_tags(mapping: SiteMapping) -> list[str]:
    """Keys of archive tags left out because a mapped tag has the same key."""
    mapped = {t.key for t in mapping.tags}
    return [t.key for t in _candidates(mapping) if t.key in mapped]


def _candidates(mapping: SiteMapping) -> Iterable[ArchiveTag]:
    settings = mapping.archives
    if not mapping.storage.enabled:
        return
    for meter in mapping.meters:
        if not settings.covers(meter.name):
            continue
        registers = mapping.templates[meter.template].registers if meter.template in mapping.templates else {}
        if settings.daily:
            for register in settings.daily_registers:
                reg = registers.get(register)
                unit = reg.unit if reg is not None and reg.unit else _guess_unit(register)
                what = reg.description if reg is not None and reg.description else register
                name = daily_tag_name(register)
                yield ArchiveTag(
                    f"{meter.name}.{name}", meter.name, name, ArchiveKind.DAILY, register, unit,
                    f"{what} at the start of the day (meter daily archive; history: every day)",
                )
        if settings.profile:
            for channel in PROFILE_CHANNELS:
                name, unit = PROFILE_TAGS[channel]
                yield ArchiveTag(
                    f"{meter.name}.{name}", meter.name, name, ArchiveKind.PROFILE, channel, unit,
                    f"{channel} {_PROFILE_WORDS[channel]} of the last 30-minute interval "
                    "(meter load profile; time = interval start; history: every interval)",
                )


def _guess_unit(register: str) -> str:
    return "kvarh" if "reactive" in register else "kWh"


def _record_value(record: ArchiveRecord, now: datetime) -> TagValue:
    return TagValue(record.value, Quality.Good, record.timestamp, now)


class ArchiveTagFeeder:
    """Keeps the archive tags of a mapping at the newest record (see the module docstring)."""

    def __init__(self, mapping: SiteMapping, tag_store: TagStore, readings: ReadingStore) -> None:
        self._tag_store = tag_store
        self._readings = readings
        self._tags: dict[tuple[str, ArchiveKind, str], ArchiveTag] = {}
        self._newest: dict[str, datetime] = {}  # key → time of the value in the TagStore
        self._set_tags(mapping)

    @property
    def keys(self) -> list[str]:
        """TagStore keys of the archive tags."""
        return [t.key for t in self._tags.values()]

    def tap(self) -> ArchiveTap:
        """A ReadingStore for the archive reader: the real store, plus this feeder as a witness."""
        return ArchiveTap(self._readings, self)

    async def start(self) -> int:
        """Define the tags and load the newest stored record of each; returns how many were found."""
        for key in colliding_archive_tags(self._mapping):
            log.warning("archive tag %s is not published: a mapped tag has that name", key)
        self._tag_store.define(self.keys)
        return await self._load(list(self._tags.values()))

    async def apply_mapping(self, mapping: SiteMapping) -> None:
        """Reload: tags that are gone leave the TagStore, new ones are defined and loaded."""
        old = {t.key for t in self._tags.values()}
        self._set_tags(mapping)
        new = [t for t in self._tags.values() if t.key not in old]
        gone = old - {t.key for t in self._tags.values()}
        self._tag_store.remove(gone)
        for key in gone:
            self._newest.pop(key, None)
        self._tag_store.define(t.key for t in new)
        await self._load(new)

    def on_records(self, records: Sequence[ArchiveRecord]) -> None:
        """Publish records that are newer than a tag's current value (called by ``ArchiveTap``)."""
        now = datetime.now(UTC)
        values: dict[str, TagValue] = {}
        for record in records:
            tag = self._tags.get((record.meter, record.kind, record.channel))
            if tag is None or record.value is None:
                continue
            newest = self._newest.get(tag.key)
            if newest is not None and record.timestamp <= newest:
                continue  # a backfill of older days: history only
            self._newest[tag.key] = record.timestamp
            values[tag.key] = _record_value(record, now)
        if values:
            self._tag_store.set_values(values)

    def _set_tags(self, mapping: SiteMapping) -> None:
        self._mapping = mapping
        self._tags = {(t.meter, t.kind, t.channel): t for t in archive_tags(mapping)}

    async def _load(self, tags: Sequence[ArchiveTag]) -> int:
        by_source: dict[tuple[str, ArchiveKind], set[str]] = {}
        for tag in tags:
            by_source.setdefault((tag.meter, tag.kind), set()).add(tag.channel)
        found: list[ArchiveRecord] = []
        try:
            for (meter, kind), channels in by_source.items():
                found.extend(await self._newest_records(meter, kind, channels))
        except StorageError as exc:
            log.error("cannot load the newest archive records: %s", exc)
        self.on_records(found)
        return len(found)

    async def _newest_records(
        self, meter: str, kind: ArchiveKind, channels: set[str]
    ) -> list[ArchiveRecord]:
        now = datetime.now(UTC)
        newest: dict[str, ArchiveRecord] = {}
        for lookback in _LOOKBACK:
            for record in await self._readings.archive(meter, kind, now - lookback, _FAR_FUTURE):
                if record.channel in channels:
                    newest[record.channel] = record  # oldest first: the last one wins
            if len(newest) == len(channels):
                break
        return list(newest.values())


class ArchiveTap:
    """A ``ReadingStore`` that forwards to ``store`` and shows archive batches to a feeder."""

    def __init__(self, store: ReadingStore, feeder: ArchiveTagFeeder) -> None:
        self._store = store
        self._feeder = feeder

    def __repr__(self) -> str:
        return f"ArchiveTap({self._store!r})"

    async def open(self) -> None:
        """Open the store."""
        await self._store.open()

    async def close(self) -> None:
        """Close the store."""
        await self._store.close()

    def submit(self, rows: Sequence[Reading], tag_class: TagClass = TagClass.INSTANT) -> None:
        """Queue readings."""
        self._store.submit(rows, tag_class)

    def submit_archive(self, records: Sequence[ArchiveRecord]) -> None:
        """Queue archive records, then let the feeder publish the newest of them."""
        self._store.submit_archive(records)
        try:
            self._feeder.on_records(records)
        except Exception:  # publishing must never lose a record for storage
            log.exception("publishing archive records failed")

    async def flush(self) -> None:
        """Wait until everything submitted is durable."""
        await self._store.flush()

    async def keys(self) -> list[str]:
        """Keys with stored readings."""
        return await self._store.keys()

    async def last_values(self, keys: Iterable[str]) -> dict[str, Reading]:
        """Newest reading of each key."""
        return await self._store.last_values(keys)

    async def history(
        self, key: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        """Readings of a key in a time range."""
        return await self._store.history(key, start, end, limit)

    async def archive(
        self,
        meter: str,
        kind: ArchiveKind,
        start: datetime,
        end: datetime,
        channel: str | None = None,
    ) -> list[ArchiveRecord]:
        """Archive records of a meter in a time range."""
        return await self._store.archive(meter, kind, start, end, channel)

    async def prune(self, now: datetime) -> int:
        """Delete rows past their retention."""
        return await self._store.prune(now)

    async def next_sequence(self, name: str) -> int:
        """Next value of a persistent counter."""
        return await self._store.next_sequence(name)
