"""The simulated meter and bus without I/O: sessions, lockout, errors, values, quirks, faults."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.config.model import RegisterFormat
from bridge.config.templates import builtin_templates, template_for_model
from bridge.protocol.milur.codec import FrameDecoder
from bridge.protocol.milur.crc import crc_ok
from bridge.protocol.milur.frames import (
    Address,
    ErrorCode,
    IdentifyReply,
    NetworkAddressReply,
    SessionReply,
    close_session_request,
    identify_request,
    network_address_request,
    open_session_request,
    read_request,
    write_request,
)
from bridge.protocol.milur.values import decode_value
from bridge.simulator import SimulatedBus, SimulatedMeter

from .rig import Master, one


def reg(model: str, name: str) -> int:
    return builtin_templates()[template_for_model(model)].registers[name].number


def value(master: Master, addr: Address, model: str, name: str) -> int | str | datetime:
    r = builtin_templates()[template_for_model(model)].registers[name]
    return decode_value(r.fmt, master.read(addr, r.number))


# ---------------------------------------------------------------- sessions and errors
def test_read_needs_a_session_then_answers() -> None:
    m, a = one(SimulatedMeter("307", 255))
    assert m.error(read_request(a, 102)) == ErrorCode.SESSION_CLOSED
    reply = m.login(a)
    assert isinstance(reply, SessionReply) and reply.level == 1
    volts = value(m, a, "307", "voltage_c")
    assert isinstance(volts, int) and 215_000 < volts < 245_000  # 0.001 V
    assert m.error(read_request(a, 200)) == ErrorCode.ILLEGAL_DATA_ADDRESS


def test_close_session_and_expiry_give_error_08() -> None:
    sim = SimulatedMeter("107", 7)
    m, a = one(sim)
    m.login(a)
    assert m.raw(close_session_request(a).encode()) == close_session_request(a).encode()
    assert m.error(read_request(a, 1)) == ErrorCode.SESSION_CLOSED
    m.login(a)
    sim.expire_session()
    assert m.error(read_request(a, 1)) == ErrorCode.SESSION_CLOSED
    timed = SimulatedMeter("107", 8, session_timeout=60)
    m2, a2 = one(timed)
    m2.login(a2)
    m2.read(a2, 1)
    timed.advance(61)
    assert m2.error(read_request(a2, 1)) == ErrorCode.SESSION_CLOSED


def test_wrong_password_then_lockout_for_30_minutes() -> None:
    sim = SimulatedMeter("107", 3, password=bytes.fromhex("010203040506"))
    m, a = one(sim)
    bad = open_session_request(a, 1, b"\xff" * 6)
    good = open_session_request(a, 1, bytes.fromhex("010203040506"))
    for _ in range(3):
        assert m.error(bad) == ErrorCode.PASSWORD_INCORRECT
    assert sim.locked and sim.counters.wrong_passwords == 3
    assert m.error(good) == ErrorCode.ACCESS_DENIED  # even the right password while locked
    sim.advance(29 * 60)
    assert m.error(good) == ErrorCode.ACCESS_DENIED
    sim.advance(61)
    assert isinstance(m.ask(good), SessionReply)
    assert sim.counters.sessions_opened == 1 and not sim.locked


def test_lockout_error_code_is_configurable_and_two_wrong_do_not_lock() -> None:
    sim = SimulatedMeter("105", 4, locked_error=0x0D)
    m, a = one(sim)
    bad = open_session_request(a, 1, b"\x00" * 6)
    m.error(bad)
    m.error(bad)
    assert isinstance(m.login(a), SessionReply)  # a success resets the count
    for _ in range(3):
        m.error(bad)
    assert m.error(open_session_request(a, 1, b"\xff" * 6)) == ErrorCode.PASSWORD_INCORRECT
    sim.unlock()
    assert isinstance(m.login(a), SessionReply)


def test_unknown_access_level_is_refused() -> None:
    m, a = one(SimulatedMeter("107", 9, access_levels=(1,)))
    assert m.error(open_session_request(a, 0, b"\xff" * 6)) == ErrorCode.ILLEGAL_DATA_VALUE


def test_relay_write_switches_the_load_off() -> None:
    sim = SimulatedMeter("107", 10)
    m, a = one(sim)
    m.login(a)
    request = write_request(a, 84, b"\x01")
    echo = m.raw(request.encode())
    assert echo == request.encode()  # the meter echoes REG VALUE (§4)
    assert sim.relay_off
    assert value(m, a, "107", "relay_state") == 1
    assert value(m, a, "107", "current") == 0
    assert m.error(write_request(a, 1, b"\x00\x00\x00")) == ErrorCode.ACCESS_DENIED


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("model", ["104", "105", "107", "305", "307"])
def test_every_template_register_answers_with_its_format(model: str) -> None:
    m, a = one(SimulatedMeter(model, 21, wake_quirk=False))  # the 104 quirk has its own test
    m.login(a)
    for r in builtin_templates()[template_for_model(model)].registers.values():
        decoded = decode_value(r.fmt, m.read(a, r.number))
        if r.fmt is RegisterFormat.ASCII:
            assert isinstance(decoded, str) and decoded
    assert value(m, a, model, "model") == f"Milur {model}"
    assert value(m, a, model, "serial_number") == "012000021"


def test_values_move_and_energy_only_increases_with_tariffs_summing_to_total() -> None:
    sim = SimulatedMeter("307", 255, seed=5)
    m, a = one(sim)
    m.login(a)
    names = ["energy_active_import_total", "energy_active_import_t1", "energy_active_import_t2"]
    voltages, frequencies, totals = set(), set(), []
    for _ in range(12):
        total, t1, t2 = (value(m, a, "307", n) for n in names)
        assert total == t1 + t2  # type: ignore[operator]
        totals.append(total)
        voltages.add(value(m, a, "307", "voltage_a"))
        freq = value(m, a, "307", "frequency")
        assert isinstance(freq, int) and 49_800 < freq < 50_200
        frequencies.add(freq)
        p = value(m, a, "307", "power_active_total")
        s = value(m, a, "307", "power_apparent_total")
        assert 0 < p <= s  # type: ignore[operator]
        sim.advance(600)
    assert totals == sorted(totals) and totals[-1] > totals[0]
    assert len(voltages) > 3 and len(frequencies) > 3


def test_energy_scale_option_changes_the_raw_counter() -> None:
    coarse, fine = SimulatedMeter("305", 30, seed=1), SimulatedMeter("305", 31, seed=1)
    fine.energy_scale = 0.001
    mc, ac = one(coarse)
    mf, af = one(fine)
    mc.login(ac)
    mf.login(af)
    raw_c = value(mc, ac, "305", "energy_active_import_total")
    raw_f = value(mf, af, "305", "energy_active_import_total")
    assert isinstance(raw_c, int) and isinstance(raw_f, int)
    assert abs(raw_f - raw_c * 10) < 30  # same kWh, ten times the counts


@pytest.mark.parametrize("bcd", [False, True])
def test_clock_register_binary_or_bcd(bcd: bool) -> None:
    m, a = one(SimulatedMeter("107", 12, clock_bcd=bcd))
    m.login(a)
    clock = decode_value(RegisterFormat.DATETIME, m.read(a, 14), bcd_time=bcd)
    assert isinstance(clock, datetime)
    assert abs((clock - datetime.now()).total_seconds()) < 5


def test_four_byte_address_and_width_setting() -> None:
    wide = SimulatedMeter("107", 49932)
    assert wide.address_width == 4 and wide.serial_number == "012049932"
    m, a = one(wide)
    assert isinstance(m.login(a), SessionReply)
    assert m.ask(open_session_request(Address(49932 & 0xFF, 1), 1, b"\xff" * 6)) is None
    narrow_as_wide = SimulatedMeter("307", 200, address_width=4)
    m2 = Master(SimulatedBus([narrow_as_wide]))
    assert m2.ask(open_session_request(Address(200, 1), 1, b"\xff" * 6)) is None
    assert isinstance(m2.login(Address(200, 4)), SessionReply)


def test_network_address_and_identification_broadcasts() -> None:
    bus = SimulatedBus([SimulatedMeter("107", 77)])
    reply = Master(bus).ask(network_address_request())
    assert isinstance(reply, NetworkAddressReply) and reply.network_address == 77
    assert Master(bus).ask(identify_request()) is None  # a plain line has no GSM module
    reply = Master(bus, imei="356938035643809").ask(identify_request())
    assert isinstance(reply, IdentifyReply) and reply.imei == "356938035643809"


# ---------------------------------------------------------------- the 104 quirk
def test_104_ignores_the_request_after_an_8_byte_packet_unless_woken() -> None:
    sim = SimulatedMeter("104", 12)
    m, a = one(sim)
    m.login(a)
    m.read(a, 9)  # frequency: an 8-byte reply (W + 5 + 2)
    assert m.ask(read_request(a, 1)) is None
    assert sim.counters.ignored == 1
    m.read(a, 1)  # only the next request is ignored
    m.read(a, 9)
    assert m.raw(b"\xff") == b""  # the wake byte
    m.read(a, 1)
    assert sim.counters.ignored == 1


def test_quirk_can_be_switched_and_other_models_do_not_have_it() -> None:
    for sim in (SimulatedMeter("104", 12, wake_quirk=False), SimulatedMeter("107", 12)):
        m, a = one(sim)
        m.login(a)
        m.read(a, 9)
        m.read(a, 1)
        assert sim.counters.ignored == 0


def test_an_8_byte_packet_for_another_meter_deafens_the_104() -> None:
    quirky, other = SimulatedMeter("104", 12), SimulatedMeter("307", 13)
    m = Master(SimulatedBus([quirky, other]))
    m.login(Address(12))
    m.login(Address(13))
    m.read(Address(13), 9)  # 8-byte reply from the 307
    assert m.ask(read_request(Address(12), 1)) is None
    assert quirky.counters.ignored == 1


# ---------------------------------------------------------------- faults and counters
def test_silent_and_delay_faults() -> None:
    sim = SimulatedMeter("107", 5)
    m, a = one(sim)
    sim.faults.silent = True
    assert m.ask(open_session_request(a, 1, b"\xff" * 6)) is None
    assert sim.counters.requests == 1
    sim.faults.silent = False
    sim.faults.delay = 0.7
    answers = m.conn.feed(open_session_request(a, 1, b"\xff" * 6).encode())
    assert [x.delay for x in answers] == [0.7]


def test_bad_crc_fault_is_seen_as_a_crc_error() -> None:
    sim = SimulatedMeter("107", 5)
    m, a = one(sim)
    sim.faults.bad_crc = True
    raw = m.raw(open_session_request(a, 1, b"\xff" * 6).encode())
    assert len(raw) == 5 and not crc_ok(raw)
    decoder = FrameDecoder()
    decoder.expect(open_session_request(a, 1, b"\xff" * 6))
    decoder.feed(raw)
    assert decoder.next_frame() is None and decoder.stats.crc_errors >= 1


def test_garbage_fault_precedes_a_valid_reply() -> None:
    sim = SimulatedMeter("107", 5)
    m, a = one(sim)
    sim.faults.garbage = True
    raw = m.raw(open_session_request(a, 1, b"\xff" * 6).encode())
    assert raw.startswith(sim.faults.garbage_bytes)
    reply = m.ask(open_session_request(a, 1, b"\xff" * 6))
    assert isinstance(reply, SessionReply)
    assert m.decoder.stats.discarded_bytes >= len(sim.faults.garbage_bytes)


def test_wrong_address_fault_answers_as_another_meter() -> None:
    sim = SimulatedMeter("107", 5)
    m, a = one(sim)
    sim.faults.wrong_address = True
    raw = m.raw(open_session_request(a, 1, b"\xff" * 6).encode())
    assert raw[0] == 6 and crc_ok(raw)
    assert m.ask(open_session_request(a, 1, b"\xff" * 6)) is None


def test_counters() -> None:
    sim = SimulatedMeter("107", 5)
    m, a = one(sim)
    m.error(open_session_request(a, 1, b"\x01" * 6))
    m.login(a)
    m.read(a, 1)
    m.read(a, 2)
    c = sim.counters
    assert (c.requests, c.sessions_opened, c.wrong_passwords, c.errors_sent) == (4, 1, 1, 1)


def test_bad_construction_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown Milur model"):
        SimulatedMeter("999", 1)
    with pytest.raises(ValueError, match="6 raw bytes"):
        SimulatedMeter("107", 1, password=b"123")
    with pytest.raises(ValueError, match="two meters"):
        SimulatedBus([SimulatedMeter("107", 1), SimulatedMeter("307", 1)])
    assert "password" not in repr(SimulatedMeter("107", 1)).lower()
