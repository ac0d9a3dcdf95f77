"""MilurDriver against simulated meters over a real TCP connection (sessions, retries, errors)."""

from __future__ import annotations

import logging

import pytest
from driver_rig import UNKNOWN_TO_METER, meter_config, tcp_rig, template

from bridge.config.model import RegisterDef, RegisterFormat
from bridge.drivers.errors import (
    AuthenticationFailed,
    BadValue,
    CorruptReply,
    MeterErrorReply,
    ResponseTimeout,
    SessionRefused,
)
from bridge.drivers.milur import MilurDriver
from bridge.protocol.milur.values import decode_value
from bridge.simulator.meter import SimulatedMeter

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("no_leftovers")]

REGISTERS = ["voltage", "frequency", "energy_active_import_total", "tariff_current"]


async def test_session_opened_once_for_many_reads() -> None:
    sim = SimulatedMeter("107", 17)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(17), template())
        for _ in range(3):
            readings = await driver.read_registers(rig.link, REGISTERS)
            assert set(readings) == set(REGISTERS)
            assert all(r.ok for r in readings.values())
        assert sim.counters.sessions_opened == 1
        assert driver.stats.session_opens == 1
        assert rig.link.stats.requests == 1 + 3 * len(REGISTERS)
        assert rig.link.stats.responses == rig.link.stats.requests


async def test_values_are_decoded_and_scaled_with_the_meter_scale() -> None:
    sim = SimulatedMeter("107", 18, energy_scale=0.001)
    tpl = template()
    async with tcp_rig(sim) as rig:
        cfg = meter_config(18, energy_scale=0.001, scale_overrides={"frequency": 0.01})
        driver = MilurDriver(cfg, tpl)
        readings = await driver.read_registers(rig.link, REGISTERS)
    volts = readings["voltage"]
    assert volts.value == pytest.approx(decode_value(RegisterFormat.U24, volts.raw) * 0.001)
    assert 150 < float(volts.value) < 300  # type: ignore[arg-type]
    freq = readings["frequency"]
    assert freq.value == pytest.approx(decode_value(RegisterFormat.U16, freq.raw) * 0.01)
    energy = readings["energy_active_import_total"]
    assert energy.value == pytest.approx(decode_value(RegisterFormat.BCD32, energy.raw) * 0.001)
    assert isinstance(readings["tariff_current"].value, int)  # a state stays an integer
    assert volts.read_time.tzinfo is not None


async def test_identify_reads_model_firmware_and_serial() -> None:
    sim = SimulatedMeter("105", 21, serial_number="0123456789", firmware="9.99")
    async with tcp_rig(sim) as rig:
        identity = await MilurDriver(meter_config(21, "105"), template("105")).identify(rig.link)
    assert identity.serial == "0123456789"
    assert identity.firmware == "9.99"
    assert identity.model == sim.model_text


async def test_session_closed_reopens_once_and_repeats_the_request() -> None:
    sim = SimulatedMeter("107", 30)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(30), template())
        await driver.read_registers(rig.link, ["voltage"])
        sim.expire_session()  # the meter closed it: next read gets error 08
        readings = await driver.read_registers(rig.link, ["voltage", "frequency"])
        assert all(r.ok for r in readings.values())
        assert sim.counters.sessions_opened == 2
        assert driver.stats.session_reopens == 1


async def test_session_closed_twice_is_reported_after_one_reopen() -> None:
    ticks = iter(range(0, 10**9, 10))
    # every request sees a session idle for 10 s against a 1 s timeout: always "session closed"
    sim = SimulatedMeter("107", 31, session_timeout=1.0, clock=lambda: float(next(ticks)))
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(31), template())
        readings = await driver.read_registers(rig.link, ["voltage"])
    error = readings["voltage"].error
    assert isinstance(error, MeterErrorReply) and error.code == 0x08
    assert sim.counters.sessions_opened == 2  # first open + exactly one reopen
    assert driver.stats.session_reopens == 1


async def test_wrong_password_is_tried_once_and_never_again(caplog: pytest.LogCaptureFixture) -> None:
    secret = b"s3cr3t"
    sim = SimulatedMeter("107", 40, password=b"123456")
    caplog.set_level(logging.DEBUG)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(40, password=secret), template())
        with pytest.raises(AuthenticationFailed):
            await driver.read_registers(rig.link, REGISTERS)
        sent = rig.link.stats.requests
        for _ in range(3):
            with pytest.raises(AuthenticationFailed):
                await driver.read_registers(rig.link, REGISTERS)
            with pytest.raises(AuthenticationFailed):
                await driver.identify(rig.link)
        assert driver.auth_failed
        assert sim.counters.wrong_passwords == 1
        assert sim.counters.requests == 1
        assert rig.link.stats.requests == sent == 1  # no traffic after the rejection
        assert not sim.locked
        errors = [
            r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("bridge.drivers")
        ]
        assert len(errors) == 1 and "REJECTED" in errors[0].getMessage()
        assert secret.decode() not in caplog.text and secret.hex() not in caplog.text
        assert "s3cr3t" not in repr(driver.meter)

        # the operator fixes the configuration on the meter side and resets the driver
        sim.set_password(secret)
        driver.reset_auth()
        readings = await driver.read_registers(rig.link, ["voltage"])
        assert readings["voltage"].ok


async def test_access_denied_on_session_open_counts_as_rejected() -> None:
    sim = SimulatedMeter("107", 41, password=b"123456", lockout_attempts=1, locked_error=0x09)
    sim.handle(0x08, b"\x01" + b"\x00" * 6, 1)  # someone else locked it: now every open → 09
    assert sim.locked
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(41, password=b"123456"), template())
        with pytest.raises(AuthenticationFailed):
            await driver.read_registers(rig.link, ["voltage"])
        with pytest.raises(AuthenticationFailed):
            await driver.read_registers(rig.link, ["voltage"])
    assert rig.link.stats.requests == 1


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_timeouts_are_retried_channel_retries_times(retries: int) -> None:
    sim = SimulatedMeter("107", 50)
    async with tcp_rig(sim, retries=retries, response_timeout=0.1) as rig:
        driver = MilurDriver(meter_config(50), template())
        sim.faults.silent = True
        with pytest.raises(ResponseTimeout):
            await driver.read_registers(rig.link, REGISTERS)
        assert sim.counters.requests == retries + 1  # session-open attempts that got no reply
        assert rig.link.stats.timeouts == retries + 1
        assert driver.stats.retries == retries
        # a transient failure is not a rejection: the meter answers again, the read works
        sim.faults.silent = False
        readings = await driver.read_registers(rig.link, ["voltage"])
        assert readings["voltage"].ok


async def test_a_late_reply_is_recovered_by_the_retry() -> None:
    sim = SimulatedMeter("107", 51)
    async with tcp_rig(sim, retries=1, response_timeout=0.2) as rig:
        driver = MilurDriver(meter_config(51), template())
        await driver.read_registers(rig.link, ["voltage"])
        # the reply comes 0.3 s late: after the first attempt's timeout, within the retry's
        sim.faults.delay = 0.3
        readings = await driver.read_registers(rig.link, ["frequency"])
        assert readings["frequency"].ok
        assert driver.stats.retries == 1
        assert rig.link.stats.timeouts == 1


async def test_corrupt_replies_raise_corrupt_reply() -> None:
    sim = SimulatedMeter("107", 52)
    async with tcp_rig(sim, retries=1, response_timeout=0.1) as rig:
        driver = MilurDriver(meter_config(52), template())
        await driver.read_registers(rig.link, ["voltage"])
        sim.faults.bad_crc = True
        with pytest.raises(CorruptReply):
            await driver.read_registers(rig.link, ["voltage"])
        assert rig.link.stats.crc_errors == 2
        assert driver.stats.retries == 1


async def test_illegal_address_fails_only_that_register() -> None:
    sim = SimulatedMeter("107", 60)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(60), template("107", UNKNOWN_TO_METER))
        readings = await driver.read_registers(rig.link, ["voltage", "not_in_meter", "frequency"])
        error = readings["not_in_meter"].error
        assert isinstance(error, MeterErrorReply) and error.code == 0x02
        assert error.register == "not_in_meter"
        assert readings["not_in_meter"].value is None
        assert readings["voltage"].ok and readings["frequency"].ok
        # transient, not disabled: the register is asked for again next time
        before = sim.counters.requests
        await driver.read_registers(rig.link, ["not_in_meter"])
        assert sim.counters.requests == before + 1


async def test_undecodable_value_is_a_bad_value_for_that_register() -> None:
    sim = SimulatedMeter("107", 61)
    # the driver's template claims frequency (2 bytes on the wire) is BCD32 (4 bytes)
    wrong = RegisterDef("frequency", 9, RegisterFormat.BCD32, 0.01, energy=True)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(61), template("107", wrong))
        readings = await driver.read_registers(rig.link, ["frequency", "voltage"])
    assert isinstance(readings["frequency"].error, BadValue)
    assert len(readings["frequency"].raw) == 2
    assert readings["voltage"].ok


async def test_four_byte_addresses() -> None:
    far = SimulatedMeter("107", 49932)  # serial …049932 → 4-byte address (§2)
    near = SimulatedMeter("107", 12)
    async with tcp_rig(far, near) as rig:
        far_driver = MilurDriver(meter_config(49932), template())
        near_driver = MilurDriver(meter_config(12), template())
        assert far_driver.address.width == 4 and near_driver.address.width == 1
        far_id = await far_driver.identify(rig.link)
        near_id = await near_driver.identify(rig.link)
    assert far_id.serial == far.serial_number and near_id.serial == near.serial_number
    assert far.counters.sessions_opened == 1 and near.counters.sessions_opened == 1


async def test_close_session_sends_func_09() -> None:
    sim = SimulatedMeter("107", 70)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(70), template())
        await driver.close_session(rig.link)  # nothing open: nothing sent
        assert rig.link.stats.requests == 0
        await driver.read_registers(rig.link, ["voltage"])
        assert sim.session_level == 1
        await driver.close_session(rig.link)
        assert sim.session_level is None
        assert not driver.session_open


async def test_unknown_register_name_is_a_clear_error() -> None:
    sim = SimulatedMeter("107", 71)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(71), template())
        with pytest.raises(ValueError, match="no register 'nonsense'"):
            await driver.read_registers(rig.link, ["voltage", "nonsense"])
        assert rig.link.stats.requests == 0


async def test_session_refused_for_another_reason_fails_the_whole_poll() -> None:
    sim = SimulatedMeter("107", 72, access_levels=(0,))  # level 1 is not offered: error 03
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(72), template())
        with pytest.raises(SessionRefused) as caught:
            await driver.read_registers(rig.link, REGISTERS)
        assert caught.value.code == 0x03
        assert sim.counters.requests == 1  # one session attempt, not one per register
        assert not driver.auth_failed  # not a password problem: the next poll tries again
