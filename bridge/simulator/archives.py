"""A simulated meter's own memory: daily archive, 30-minute load profile, power on/off journal.

Everything is generated deterministically from the meter's seed and its simulated wall clock, so a
record read today and the same record read after a (simulated) two-day outage are identical, and
the meter "keeps recording" while nobody reaches it: a record exists as soon as its time has
passed on the meter's clock.

Layouts follow the one-source rows of protocol notes §4; where the notes are silent the simulator
picks one plausible form and says so here (the bridge's settings default to the same form):

- record numbers (the u16 IDX of FUNC 0B/0C/0D and START/END of FUNC 10) are running numbers
  modulo 65536 that never move: daily = days since 2000-01-01, profile = half-hours since then,
  journal = events since the meter was installed. The meter holds the newest ``depth`` of each;
- daily record (0C, LIST 42): ``00 min hour day mon yy`` at 00:00 + BCD32 blocks A+ total, T1, T2
  in 0.01 kWh (T1 + T2 = total);
- profile record (0D, LIST 10): ``min hour day mon yy`` of the interval start + four u16 LE words,
  the interval's energy A+, A−, R+, R− in Wh (0.001 kWh);
- journal record (0B, LIST ``POWER_JOURNAL``): ``sec min hour day mon yy flags``, flags 0 = power
  off, 1 = power on;
- search (10): STATUS 1 "accepted" on a new question, 2 "searching" until ``search_delay``
  seconds have passed, then 3 (found as asked), 4 (found, but the first record is later than the
  asked start: older records are gone), 5 (the range is outside the memory), 6 (nothing recorded
  in the range), 7 (a bad time in the question).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.simulator import encoding

F_JOURNAL_COUNT, F_JOURNAL_RECORD, F_DAILY, F_PROFILE, F_SEARCH = 0x06, 0x0B, 0x0C, 0x0D, 0x10
ARCHIVE_FUNCS = (F_JOURNAL_COUNT, F_JOURNAL_RECORD, F_DAILY, F_PROFILE, F_SEARCH)
DAILY_LIST, PROFILE_LIST, POWER_JOURNAL = 0x42, 0x10, 0x01
E_ILLEGAL_VALUE = 0x03
S_ACCEPTED, S_SEARCHING, S_FOUND, S_LATER_FOUND, S_OUT_OF_RANGE, S_EMPTY, S_ERROR = range(1, 8)

EPOCH = datetime(2000, 1, 1)
#: default installation date of a simulated meter (journal numbers count from it)
INSTALLED = datetime(2024, 1, 1)
SLOT = timedelta(minutes=30)
DAY = timedelta(days=1)
_WRAP = 1 << 16
#: profile channels A+, A-, R+, R- (the order of the words of a profile record)
PROFILE_WORDS = 4


@dataclass
class ArchiveDepth:
    """How many records of each kind the meter holds (the oldest ones are overwritten)."""

    daily: int = 128
    profile: int = 60 * 48
    journal: int = 200


def _bcd(n: int) -> int:
    return ((n // 10) << 4) | (n % 10)


def _unbcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


class MeterArchives:
    """Answers FUNC 06, 0B, 0C, 0D and 10 for one simulated meter (see the module docstring).

    ``clock`` gives the meter's wall time (naive, the meter's own zone) and ``monotonic`` its
    simulated monotonic time (for the search delay). ``bcd`` writes record times in BCD.
    """

    def __init__(
        self,
        seed: int,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        *,
        bcd: bool = False,
        search_delay: float = 2.0,
        depth: ArchiveDepth | None = None,
        installed: datetime | None = None,
    ) -> None:
        self.seed = seed
        self.bcd = bcd
        self.search_delay = search_delay
        self.depth = depth or ArchiveDepth()
        self._clock = clock
        self._monotonic = monotonic
        rng = random.Random(f"{seed}:archive")
        # mean energy per half-hour, Wh (A+, A-, R+, R-) and the counters' values at the epoch
        active = rng.randint(200, 800)
        self._mean = (active, 0, active // 4, 0)
        self._base = tuple(rng.randint(100_000, 2_000_000) if m else 0 for m in self._mean)
        start = installed or INSTALLED
        self._installed_day = (start - EPOCH).days
        self._day_events: dict[int, list[tuple[datetime, int]]] = {}
        self._events_before: dict[int, int] = {}
        self._searches: dict[bytes, float] = {}
        self.search_questions = 0  # FUNC 10 requests seen (tests count them)

    # ------------------------------------------------------------------ energy series
    def counter(self, channel: int, slot: int) -> int:
        """Cumulative energy (Wh) of a profile channel at the start of half-hour ``slot``."""
        mean = self._mean[channel]
        if not mean:
            return 0
        # bounded noise below half the mean keeps every interval's energy positive
        noise = int(random.Random(f"{self.seed}:{channel}:{slot}").random() * mean * 0.45)
        return self._base[channel] + slot * mean + noise

    def daily_values(self, day: int) -> tuple[int, int, int]:
        """A+ total, T1, T2 at the start of day number ``day`` in 0.01 kWh."""
        total = self.counter(0, day * 48) // 10
        t1 = total * 7 // 10
        return total, t1, total - t1

    def profile_values(self, slot: int) -> tuple[int, ...]:
        """Energy (Wh) of half-hour ``slot`` per channel A+, A−, R+, R−."""
        return tuple(self.counter(c, slot + 1) - self.counter(c, slot) for c in range(PROFILE_WORDS))

    # ------------------------------------------------------------------ journal
    def events_of_day(self, day: int) -> list[tuple[datetime, int]]:
        """Power off/on events of day number ``day``: (time, flags), oldest first."""
        found = self._day_events.get(day)
        if found is None:
            found = []
            rng = random.Random(f"{self.seed}:journal:{day}")
            if day >= self._installed_day and rng.random() < 0.35:
                off = EPOCH + timedelta(
                    days=day, minutes=rng.randrange(0, 1440 - 120), seconds=rng.randrange(60)
                )
                on = off + timedelta(minutes=rng.randint(1, 90), seconds=rng.randrange(60))
                found = [(off, 0), (on, 1)]
            self._day_events[day] = found
        return found

    def _first_number(self, day: int) -> int:
        """Running number of the first event of ``day`` (events since installation)."""
        if day <= self._installed_day:
            return 0
        known = self._events_before.get(day)
        if known is not None:
            return known
        d = max((k for k in self._events_before if k < day), default=self._installed_day)
        count = self._events_before.get(d, 0)
        while d < day:
            count += len(self.events_of_day(d))
            d += 1
            self._events_before[d] = count
        return count

    def journal(self, now: datetime) -> list[tuple[int, datetime, int]]:
        """The held journal records (number, time, flags), oldest first."""
        today = (now - EPOCH).days
        held: list[tuple[int, datetime, int]] = []
        day = today
        while len(held) < self.depth.journal and day >= self._installed_day:
            first = self._first_number(day)
            day_records = [
                (first + i, t, flags)
                for i, (t, flags) in enumerate(self.events_of_day(day))
                if t <= now
            ]
            held = day_records + held
            day -= 1
        return held[-self.depth.journal :]

    # ------------------------------------------------------------------ what is held
    def held(self, list_no: int, now: datetime) -> list[tuple[int, datetime]]:
        """Held records of a list as (running number, record time), oldest first."""
        if list_no == DAILY_LIST:
            newest = (now - EPOCH).days
            return [(d, EPOCH + d * DAY) for d in range(newest - self.depth.daily + 1, newest + 1)]
        if list_no == PROFILE_LIST:
            newest = (now - EPOCH) // SLOT - 1  # the running half-hour is not finished yet
            first = newest - self.depth.profile + 1
            return [(s, EPOCH + s * SLOT) for s in range(first, newest + 1)]
        if list_no == POWER_JOURNAL:
            return [(n, t) for n, t, _ in self.journal(now)]
        return []

    def _number_of(self, list_no: int, index: int, now: datetime) -> int | None:
        """The held record whose running number ≡ ``index`` (mod 65536), if any."""
        held = self.held(list_no, now)
        if not held:
            return None
        first = held[0][0]
        number = first + (index - first) % _WRAP
        return number if number <= held[-1][0] else None

    # ------------------------------------------------------------------ answers
    def answer(self, func: int, data: bytes) -> bytes | int:
        """The reply DATA of an archive request, or an error code."""
        now = self._clock()
        if func == F_JOURNAL_COUNT:
            if len(data) != 1:
                return E_ILLEGAL_VALUE
            return min(len(self.held(data[0], now)), 0xFFFF).to_bytes(2, "little")
        if func == F_SEARCH:
            return self._search(data, now)
        if len(data) != 3:
            return E_ILLEGAL_VALUE
        list_no, index = data[0], int.from_bytes(data[1:3], "little")
        if func == F_DAILY and list_no == DAILY_LIST:
            return self._daily(index, now)
        if func == F_PROFILE and list_no == PROFILE_LIST:
            return self._profile(index, now)
        if func == F_JOURNAL_RECORD and list_no == POWER_JOURNAL:
            return self._journal_record(index, now)
        return E_ILLEGAL_VALUE

    def _time(self, t: datetime, seconds: bool) -> bytes:
        fields: tuple[int, ...] = (t.minute, t.hour, t.day, t.month, t.year - 2000)
        if seconds:
            fields = (t.second, *fields)
        return bytes(_bcd(f) if self.bcd else f for f in fields)

    def _daily(self, index: int, now: datetime) -> bytes | int:
        day = self._number_of(DAILY_LIST, index, now)
        if day is None:
            return E_ILLEGAL_VALUE
        blocks = b"".join(encoding.milur_bcd32(v) for v in self.daily_values(day))
        return self._time(EPOCH + day * DAY, seconds=True) + blocks

    def _profile(self, index: int, now: datetime) -> bytes | int:
        slot = self._number_of(PROFILE_LIST, index, now)
        if slot is None:
            return E_ILLEGAL_VALUE
        words = b"".join(min(v, 0xFFFF).to_bytes(2, "little") for v in self.profile_values(slot))
        return self._time(EPOCH + slot * SLOT, seconds=False) + words

    def _journal_record(self, index: int, now: datetime) -> bytes | int:
        number = self._number_of(POWER_JOURNAL, index, now)
        if number is None:
            return E_ILLEGAL_VALUE
        for n, t, flags in self.journal(now):
            if n == number:
                return self._time(t, seconds=True) + bytes([flags])
        return E_ILLEGAL_VALUE

    def _decode_time(self, raw: bytes) -> datetime:
        conv = _unbcd if self.bcd else (lambda b: b)
        minute, hour, day, month, year = (conv(b) for b in raw)
        return datetime(2000 + year, month, day, hour, minute)

    def _search(self, data: bytes, now: datetime) -> bytes:
        """FUNC 10: STATUS 1 first, 2 while searching, then the result (module docstring)."""
        self.search_questions += 1
        if len(data) != 11:
            return bytes([S_ERROR, 0, 0, 0, 0])
        ready = self._searches.get(data)
        moment = self._monotonic()
        if self.search_delay > 0:
            if ready is None:
                self._searches[data] = moment + self.search_delay
                return bytes([S_ACCEPTED, 0, 0, 0, 0])
            if moment < ready:
                return bytes([S_SEARCHING, 0, 0, 0, 0])
            del self._searches[data]
        try:
            start, end = self._decode_time(data[1:6]), self._decode_time(data[6:11])
        except ValueError:
            return bytes([S_ERROR, 0, 0, 0, 0])
        held = self.held(data[0], now)
        if not held:
            return bytes([S_EMPTY, 0, 0, 0, 0])
        if end < held[0][1] or start > held[-1][1] or end < start:
            return bytes([S_OUT_OF_RANGE, 0, 0, 0, 0])
        inside = [n for n, t in held if start <= t <= end]
        if not inside:
            return bytes([S_EMPTY, 0, 0, 0, 0])
        status = S_LATER_FOUND if start < held[0][1] else S_FOUND
        first, last = inside[0] % _WRAP, inside[-1] % _WRAP
        return bytes([status]) + first.to_bytes(2, "little") + last.to_bytes(2, "little")


def decode_clock(raw: bytes, bcd: bool) -> datetime:
    """Register 14 as written with FUNC 02: ``sec min hour weekday day month year-2000`` (§6)."""
    if len(raw) != 7:
        raise ValueError("a clock value is 7 bytes")
    conv = _unbcd if bcd else (lambda b: b)
    sec, minute, hour, _weekday, day, month, year = (conv(b) for b in raw)
    return datetime(2000 + year, month, day, hour, minute, sec)
