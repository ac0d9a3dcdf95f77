"""The simulated meter's archives: deterministic records, FUNC 10 statuses, clock writes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bridge.protocol.milur.crc import crc_ok
from bridge.simulator.archives import (
    DAILY_LIST,
    EPOCH,
    POWER_JOURNAL,
    PROFILE_LIST,
    S_ACCEPTED,
    S_EMPTY,
    S_ERROR,
    S_FOUND,
    S_LATER_FOUND,
    S_OUT_OF_RANGE,
    S_SEARCHING,
    ArchiveDepth,
    MeterArchives,
)
from bridge.simulator.meter import SimulatedMeter

NOW = datetime(2026, 11, 20, 10, 47, 13)


class FakeClocks:
    """A meter wall clock and monotonic clock moved by the test."""

    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def archives(seed: int = 7, delay: float = 0.0, **kw: object) -> tuple[MeterArchives, FakeClocks]:
    clocks = FakeClocks()
    arch = MeterArchives(seed, lambda: clocks.wall, lambda: clocks.mono, search_delay=delay, **kw)  # type: ignore[arg-type]
    return arch, clocks


def search_data(list_no: int, start: datetime, end: datetime) -> bytes:
    def t(x: datetime) -> bytes:
        return bytes([x.minute, x.hour, x.day, x.month, x.year - 2000])

    return bytes([list_no]) + t(start) + t(end)


def test_records_depend_only_on_seed_and_time() -> None:
    a, _ = archives(seed=7)
    b, clocks_b = archives(seed=7)
    c, _ = archives(seed=8)
    slot = (NOW - EPOCH) // timedelta(minutes=30) - 5
    assert a.profile_values(slot) == b.profile_values(slot)
    assert a.profile_values(slot) != c.profile_values(slot)
    index = (slot % 65536).to_bytes(2, "little")
    before = b.answer(0x0D, bytes([PROFILE_LIST]) + index)
    clocks_b.advance(2 * 86400)  # the meter keeps recording; old records stay the same
    assert b.answer(0x0D, bytes([PROFILE_LIST]) + index) == before
    assert a.answer(0x0D, bytes([PROFILE_LIST]) + index) == before


def test_energy_only_grows_and_daily_records_match_the_profile() -> None:
    a, _ = archives()
    day = (NOW - EPOCH).days
    slots = range(day * 48 - 48, day * 48)
    assert all(v > 0 for s in slots for v in a.profile_values(s)[:1])
    assert a.profile_values(day * 48)[1] == 0  # no export in the simulator
    total, t1, t2 = a.daily_values(day)
    previous = a.daily_values(day - 1)[0]
    assert t1 + t2 == total
    in_wh = sum(a.profile_values(s)[0] for s in slots)
    assert abs((total - previous) * 10 - in_wh) < 20  # 0.01 kWh truncation on both days


def test_only_finished_records_exist() -> None:
    a, clocks = archives()
    newest = a.held(PROFILE_LIST, NOW)[-1][1]
    assert newest == datetime(2026, 11, 20, 10, 0)  # 10:30..11:00 is still running
    assert a.held(DAILY_LIST, NOW)[-1][1] == datetime(2026, 11, 20)
    assert len(a.held(PROFILE_LIST, NOW)) == ArchiveDepth().profile
    assert all(t <= NOW for _, t in a.held(POWER_JOURNAL, NOW))
    clocks.advance(13 * 60)
    assert a.held(PROFILE_LIST, clocks.wall)[-1][1] == datetime(2026, 11, 20, 10, 30)


def test_search_statuses() -> None:
    a, clocks = archives(delay=2.0)
    start, end = NOW - timedelta(hours=3), NOW
    question = search_data(PROFILE_LIST, start, end)
    assert a.answer(0x10, question)[0] == S_ACCEPTED
    clocks.advance(1.0)
    assert a.answer(0x10, question)[0] == S_SEARCHING
    clocks.advance(1.5)
    reply = a.answer(0x10, question)
    assert isinstance(reply, bytes) and reply[0] == S_FOUND
    first, last = int.from_bytes(reply[1:3], "little"), int.from_bytes(reply[3:5], "little")
    wanted = [n % 65536 for n, t in a.held(PROFILE_LIST, clocks.wall) if start <= t <= end]
    assert (first, last) == (wanted[0], wanted[-1])

    b, _ = archives(delay=0.0, depth=ArchiveDepth(daily=5))
    def status(data: bytes) -> int:
        reply = b.answer(0x10, data)
        assert isinstance(reply, bytes)
        return reply[0]

    day = timedelta(days=1)
    assert status(search_data(DAILY_LIST, NOW - 30 * day, NOW)) == S_LATER_FOUND  # clipped start
    assert status(search_data(DAILY_LIST, NOW + 2 * day, NOW + 3 * day)) == S_OUT_OF_RANGE
    assert status(search_data(0x33, NOW - day, NOW)) == S_EMPTY  # a list the meter lacks
    bad = bytearray(search_data(DAILY_LIST, NOW, NOW))
    bad[4] = 13  # month 13
    assert status(bytes(bad)) == S_ERROR


def test_search_finds_no_events_in_a_quiet_range() -> None:
    a, _ = archives(delay=0.0)
    events = [t for _, t in a.held(POWER_JOURNAL, NOW)]
    gaps = [(x, y) for x, y in zip(events, events[1:], strict=False) if y - x > timedelta(hours=3)]
    x, y = gaps[-1]
    reply = a.answer(0x10, search_data(POWER_JOURNAL, x + timedelta(minutes=1), y - timedelta(minutes=1)))
    assert reply[0] == S_EMPTY  # type: ignore[index]


def test_counts_and_unknown_records() -> None:
    a, _ = archives()
    assert a.answer(0x06, bytes([PROFILE_LIST])) == ArchiveDepth().profile.to_bytes(2, "little")
    assert a.answer(0x06, bytes([DAILY_LIST])) == ArchiveDepth().daily.to_bytes(2, "little")
    newest_day = (NOW - EPOCH).days
    future = ((newest_day + 1) % 65536).to_bytes(2, "little")
    assert a.answer(0x0C, bytes([DAILY_LIST]) + future) == 0x03
    assert a.answer(0x0C, bytes([0x41]) + future) == 0x03


def test_meter_answers_archive_functions_in_a_session_and_takes_a_clock_write() -> None:
    meter = SimulatedMeter("107", 9, search_delay=0.0)
    no_session = meter.handle(0x06, bytes([PROFILE_LIST]), 1)
    assert no_session is not None and no_session[1] == 0x86 and no_session[2] == 0x08
    assert meter.handle(0x08, b"\x01" + b"\xff" * 6, 1) is not None
    count = meter.handle(0x06, bytes([PROFILE_LIST]), 1)
    assert count is not None and crc_ok(count) and count[1] == 0x06
    target = meter.wall_time() + timedelta(seconds=100)
    value = bytes([target.second, target.minute, target.hour, target.isoweekday(), target.day,
                   target.month, target.year - 2000])
    echo = meter.handle(0x02, bytes([14]) + value, 1)
    assert echo is not None and echo[1] == 0x02
    assert meter.counters.clock_writes == 1
    assert meter.clock_error == pytest.approx(100, abs=1.5)
    assert abs((meter.wall_time() - target).total_seconds()) <= 1.5
