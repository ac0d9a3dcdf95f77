"""Collector over a pseudo-terminal at 9600 baud: values, scaling, diagnostics, unplug and replug."""

from __future__ import annotations

import pytest
from site_builder import group, meter, quality, running, serial_channel, site, value

from bridge.config.model import TagConfig
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.pty import PtyLine
from bridge.tags import Quality

pytestmark = pytest.mark.timeout(60)


async def test_two_meters_on_a_serial_line(tmp_path, no_leftovers, wait_until) -> None:
    flat = SimulatedMeter("105", 1, firmware="2.21")
    house = SimulatedMeter("305", 2, firmware="123")
    async with PtyLine(SimulatedBus([flat, house]), 9600, link=str(tmp_path / "ttyRS485")) as line:
        mapping = site(
            [serial_channel("rs485", line.device)],
            [meter("flat", "rs485", 1), meter("house", "rs485", 2, model="305")],
            groups=[
                group("one-phase", ["flat"], ["voltage", "energy_active_import_total"], 0.3),
                group("three-phase", ["house"], ["voltage_a", "current_b"], 0.3),
            ],
            # a tag's scale and offset apply on top of the meter's engineering value
            extra_tags=[TagConfig("voltage_mv", "flat", "voltage", scale=1000.0, offset=5.0)],
        )
        async with running(mapping) as (collector, store):
            assert quality(store, "flat.voltage") is Quality.Bad_WaitingForInitialData
            assert quality(store, "flat.diag.state") is Quality.Good
            assert value(store, "flat.diag.state") == "waiting"
            keys = ["flat.voltage", "flat.energy_active_import_total", "flat.voltage_mv"]
            keys += ["house.voltage_a", "house.current_b"]
            await wait_until(
                lambda: all(quality(store, k) is Quality.Good for k in keys),
                within=10,
                what="every tag Good",
            )
            volts = store.get("flat.voltage")
            millivolts = store.get("flat.voltage_mv")
            assert volts is not None and millivolts is not None
            assert isinstance(volts.value, float) and 100.0 < volts.value < 300.0
            assert volts.source_time is not None
            assert millivolts.source_time == volts.source_time  # one reading, one batch
            assert millivolts.value == pytest.approx(volts.value * 1000.0 + 5.0)
            assert 100.0 < float(value(store, "house.voltage_a")) < 300.0  # type: ignore[arg-type]

            # identification at first contact (registers 32, 33, 68)
            assert value(store, "flat.diag.firmware") == "2.21"
            assert value(store, "house.diag.firmware") == "123"
            assert value(store, "flat.diag.serial_number") == flat.serial_number
            assert value(store, "house.diag.model_reported") == house.model_text
            assert value(store, "flat.diag.state") == "ok"
            assert value(store, "flat.diag.channel_in_use") == "rs485"
            assert value(store, "flat.diag.last_success") != ""
            assert value(store, "flat.diag.requests") >= 5  # type: ignore[operator]
            assert value(store, "flat.diag.responses") >= 5  # type: ignore[operator]
            assert value(store, "flat.diag.round_trip_ms") > 0  # type: ignore[operator]
            assert value(store, "channel:rs485.connected") is True
            assert value(store, "channel:rs485.peer") == line.device
            assert value(store, "channel:rs485.requests") >= 10  # type: ignore[operator]
            diag = collector.diagnostics()
            assert diag["flat"]["state"] == "ok" and diag["channel:rs485"]["connected"] is True
            assert flat.session_level is not None
        # stop() closed the meters' sessions (FUNC 09)
        assert flat.session_level is None
        assert house.session_level is None


async def test_unplugged_adapter_then_replugged(tmp_path, no_leftovers, wait_until) -> None:
    sim = SimulatedMeter("107", 7)
    async with PtyLine(SimulatedBus([sim]), 9600, link=str(tmp_path / "ttyUSB0")) as line:
        mapping = site([serial_channel("usb", line.device)], [meter("m", "usb", 7)], interval=0.2)
        async with running(mapping) as (collector, store):
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            before = store.get("m.voltage")
            assert before is not None

            await line.close()  # the USB adapter is pulled out
            await wait_until(
                lambda: quality(store, "m.voltage") is Quality.Bad_NotConnected,
                within=10,
                what="Bad_NotConnected after unplug",
            )
            assert value(store, "channel:usb.connected") is False
            assert value(store, "m.diag.state") == "not_connected"
            lost = store.get("m.voltage")
            assert lost is not None
            assert lost.value == before.value or lost.source_time != before.source_time
            assert lost.source_time is not None and lost.source_time >= before.source_time  # type: ignore[operator]

            await line.start()  # plugged back in (a new pty behind the same link)
            await wait_until(
                lambda: quality(store, "m.voltage") is Quality.Good, within=10, what="Good again"
            )
            after = store.get("m.voltage")
            assert after is not None and after.source_time > lost.source_time  # type: ignore[operator]
            assert value(store, "channel:usb.connected") is True
            assert value(store, "channel:usb.reconnects") >= 1  # type: ignore[operator]
            assert value(store, "m.diag.state") == "ok"
