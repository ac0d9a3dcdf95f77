"""Archive, journal and clock functions of a Milur meter (protocol notes §4, §6).

``ArchiveReader`` sends FUNC 06 (record count), 0B (journal record), 0C (daily record), 0D (profile
record), 10 (index search by time) and reads or writes the clock (register 14) through the meter's
``MilurDriver``, so the session, error-08 reopen and retry rules are the driver's.

Everything here except the clock read is [one source] in the notes; the layouts the bridge assumes
(and the simulator implements) are listed in ``bridge/simulator/archives.py`` and are settings of
``ArchiveSettings`` where a real meter may differ:

- record numbers (IDX, START, END) are u16 and wrap at 65536; a search result START..END may wrap;
- daily record blocks are BCD32 in the meter's energy scale, named by ``daily_registers``;
- profile values are u16 LE words A+, A−, R+, R− times ``profile_scale`` (kWh/kvarh);
- record times are binary unless ``clock_bcd`` (the same [open] choice as register 14);
- the clock is written with FUNC 02 on ``clock_write_register`` in the read layout ([open]).

Times returned are the meter's own (naive) wall-clock times; the caller attaches the meter's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bridge.config.model import ArchiveSettings, RegisterDef, RegisterFormat
from bridge.drivers.errors import BadValue, CorruptReply
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.protocol.milur.errors import ValueDecodeError
from bridge.protocol.milur.frames import (
    DAILY_LIST,
    PROFILE_LIST,
    ArchiveSearchReply,
    ArchiveSearchStatus,
    DailyRecordReply,
    JournalCountReply,
    JournalRecordReply,
    ProfileRecordReply,
    ReadReply,
    Reply,
    Request,
    WriteReply,
    archive_search_request,
    daily_record_request,
    journal_count_request,
    journal_record_request,
    profile_record_request,
    read_request,
    write_request,
)
from bridge.protocol.milur.values import RecordTime, decode_datetime, encode_datetime

__all__ = [
    "DAILY_LIST",
    "PROFILE_LIST",
    "ArchiveReader",
    "DailyRecord",
    "JournalEvent",
    "ProfileRecord",
    "SearchResult",
    "index_range",
]

#: record numbers are u16 and wrap (one-source layout, see the module docstring)
INDEX_WRAP = 1 << 16
_CLOCK = RegisterDef("clock", 14, RegisterFormat.DATETIME)


def index_range(start: int, end: int) -> list[int]:
    """Record numbers from ``start`` to ``end`` inclusive, oldest first, across the u16 wrap."""
    count = (end - start) % INDEX_WRAP + 1
    return [(start + i) % INDEX_WRAP for i in range(count)]


@dataclass(frozen=True, slots=True)
class DailyRecord:
    """A daily archive record: energy totals (kWh) at the start of ``time``'s day."""

    index: int
    time: datetime
    energies: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A 30-minute profile record: the interval's energy per channel (A+, A−, R+, R−)."""

    index: int
    time: datetime
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """A journal record: when, and the meter's flags (power journal: 0 = off, 1 = on)."""

    journal: int
    index: int
    time: datetime
    flags: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The answer to one FUNC 10 question."""

    status: int
    start: int
    end: int

    @property
    def pending(self) -> bool:
        """STATUS 1 (accepted) or 2 (searching): ask the same question again later (§4)."""
        return self.status in (ArchiveSearchStatus.ACCEPTED, ArchiveSearchStatus.SEARCHING)

    @property
    def found(self) -> bool:
        """STATUS 3 or 4: START..END are the records of the range."""
        return self.status in (ArchiveSearchStatus.EARLIER_FOUND, ArchiveSearchStatus.LATER_FOUND)

    @property
    def failed(self) -> bool:
        """STATUS 7 or an unknown status."""
        return not (self.pending or self.found or self.nothing)

    @property
    def nothing(self) -> bool:
        """STATUS 5 (out of range) or 6 (empty): no records in the range."""
        return self.status in (ArchiveSearchStatus.OUT_OF_RANGE, ArchiveSearchStatus.EMPTY)

    def indexes(self) -> list[int]:
        """The record numbers found (empty unless ``found``)."""
        return index_range(self.start, self.end) if self.found else []


class ArchiveReader:
    """Archive, journal and clock requests of one meter, through its driver's session."""

    def __init__(self, driver: MilurDriver, settings: ArchiveSettings) -> None:
        self.driver = driver
        self.settings = settings
        self._daily_scale = self._energy_scale()

    def __repr__(self) -> str:
        return f"ArchiveReader({self.driver.meter.name!r})"

    def _energy_scale(self) -> float:
        register = self.driver.template.registers.get("energy_active_import_total")
        if register is None:
            return self.driver.meter.energy_scale or 0.01
        return self.driver.scale_of(register)

    async def _ask(self, link: Link, request: Request, expected: type[Reply]) -> Reply:
        reply = await self.driver.request(link, request)
        if not isinstance(reply, expected):
            raise CorruptReply(f"meter {self.driver.meter.name}: unexpected reply {reply!r}")
        return reply

    # -- clock -----------------------------------------------------------------------------
    async def read_clock(self, link: Link) -> datetime:
        """The meter's date and time (register 14, §6), naive, in the meter's own zone."""
        register = self.driver.template.registers.get("clock", _CLOCK)
        reply = await self._ask(link, read_request(self.driver.address, register.number), ReadReply)
        assert isinstance(reply, ReadReply)
        try:
            return decode_datetime(reply.value, bcd=self.settings.clock_bcd).replace(tzinfo=None)
        except ValueDecodeError as exc:
            raise BadValue(register.name, reply.value, str(exc)) from exc

    async def write_clock(self, link: Link, moment: datetime) -> None:
        """Set the meter's clock: FUNC 02 on ``clock_write_register`` ([open], §4)."""
        value = encode_datetime(moment, bcd=self.settings.clock_bcd)
        request = write_request(self.driver.address, self.settings.clock_write_register, value)
        await self._ask(link, request, WriteReply)

    # -- counts and search -----------------------------------------------------------------
    async def record_count(self, link: Link, list_no: int) -> int:
        """FUNC 06: how many records the meter holds in a list."""
        reply = await self._ask(link, journal_count_request(self.driver.address, list_no), JournalCountReply)
        assert isinstance(reply, JournalCountReply)
        return reply.count

    async def search(self, link: Link, list_no: int, start: datetime, end: datetime) -> SearchResult:
        """One FUNC 10 question: the records of ``list_no`` with times in ``start..end``.

        A ``pending`` result (STATUS 1 or 2) means: ask the same question again after
        ``settings.search_retry`` seconds; the caller decides whether to hold the bus meanwhile.
        """
        request = archive_search_request(
            self.driver.address, list_no, start, end, bcd=self.settings.clock_bcd
        )
        reply = await self._ask(link, request, ArchiveSearchReply)
        assert isinstance(reply, ArchiveSearchReply)
        return SearchResult(reply.status, reply.start, reply.end)

    # -- records ---------------------------------------------------------------------------
    def _time(self, reply_time: RecordTime, what: str, raw: bytes) -> datetime:
        try:
            return reply_time.to_datetime(bcd=self.settings.clock_bcd)
        except ValueDecodeError as exc:
            raise BadValue(what, raw, str(exc)) from exc

    async def read_daily(self, link: Link, index: int) -> DailyRecord:
        """FUNC 0C: one daily record; energies in kWh (the meter's energy scale)."""
        reply = await self._ask(link, daily_record_request(self.driver.address, index), DailyRecordReply)
        assert isinstance(reply, DailyRecordReply)
        raw = reply.payload()
        # the first byte of the time is unknown (§4 "?"): the record is the day's start
        time = self._time(replace(reply.time, second=0), "daily record", raw)
        try:
            energies = tuple(e * self._daily_scale for e in reply.energies())
        except ValueDecodeError as exc:
            raise BadValue("daily record", raw, str(exc)) from exc
        return DailyRecord(index, time, energies)

    async def read_profile(self, link: Link, index: int) -> ProfileRecord:
        """FUNC 0D: one 30-minute record; values in kWh/kvarh (``profile_scale``)."""
        request = profile_record_request(self.driver.address, index)
        reply = await self._ask(link, request, ProfileRecordReply)
        assert isinstance(reply, ProfileRecordReply)
        time = self._time(reply.time, "profile record", reply.payload())
        scale = self.settings.profile_scale
        return ProfileRecord(index, time, tuple(w * scale for w in reply.words()))

    async def read_journal(self, link: Link, journal: int, index: int) -> JournalEvent:
        """FUNC 0B: one journal record."""
        request = journal_record_request(self.driver.address, journal, index)
        reply = await self._ask(link, request, JournalRecordReply)
        assert isinstance(reply, JournalRecordReply)
        time = self._time(reply.time, "journal record", reply.payload())
        return JournalEvent(journal, index, time, reply.flags)
