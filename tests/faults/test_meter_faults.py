"""A faulty meter on a shared bus, seen through the whole bridge (BridgeApp, OPC UA and Modbus).

The gateway channel carries a healthy meter and a faulty one (protocol notes §7: a gateway meter's
socket is one bus). Each simulator fault switch is turned on in turn: the healthy meters stay Good
and keep moving on both servers, the faulty one's quality says what happened, and it recovers when
the fault is switched off. The number of tasks and threads does not grow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.simulator import SimulatedBus, SimulatedMeter, TcpMeterServer
from bridge.tags import Quality

from .bridge_rig import (
    ChannelSpec,
    MeterSpec,
    SiteSpec,
    healthy_and_moving,
    modbus_client,
    opcua_client,
    quality_of,
    read_dv,
    read_status,
    running_bridge,
    settled_census,
    tcp,
    wait_for,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftovers")]

BAD = Quality.Bad_CommunicationError

# fault switch → what the faulty meter's values must say while it is on
FAULTS = {
    "silent": BAD,  # never answers: timeouts
    "delay": BAD,  # answers after the response timeout: late frames are discarded
    "bad_crc": BAD,  # every answer fails its CRC
    "wrong_address": BAD,  # answers as another meter: foreign frames
    "garbage": Quality.Good,  # noise before every answer: the decoder resynchronises (§7)
}


def _switch(meter: SimulatedMeter, fault: str, on: bool) -> None:
    if fault == "delay":
        meter.faults.delay = 0.6 if on else 0.0  # twice the channel's response timeout
    else:
        setattr(meter.faults, fault, on)


async def test_each_fault_of_a_meter_on_a_shared_bus(tmp_path: Path) -> None:
    healthy, faulty, other = (SimulatedMeter("105", a) for a in (1, 2, 7))
    async with TcpMeterServer(SimulatedBus([healthy, faulty])) as gw, \
            TcpMeterServer(SimulatedBus([other])) as solo:
        spec = SiteSpec([
            ChannelSpec("gw", tcp(gw.port), [
                MeterSpec("h1", 1),
                MeterSpec("f1", 2, attrs='bad-after="1"'),
            ]),
            ChannelSpec("solo", tcp(solo.port), [MeterSpec("h2", 7)]),
        ])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2", "f1"])
            baseline = await settled_census()
            async with opcua_client(spec.endpoint) as (client, ns), modbus_client(app) as mb:

                async def faulty_quality(expected: Quality) -> bool:
                    return quality_of(await read_dv(client, ns, "f1.voltage")) is expected

                for fault, expected in FAULTS.items():
                    _switch(faulty, fault, True)
                    crc_before = app.store.get("channel:gw.crc_errors")
                    await wait_for(lambda e=expected: faulty_quality(e), 15, f"{fault}: f1 {expected}")
                    await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
                    status = await read_status(mb, app, "f1")
                    assert status.quality == expected.modbus_code, (fault, status)
                    if expected is BAD:
                        assert status.state in ("failing", "demoted"), (fault, status)
                        assert status.failures >= 1, (fault, status)
                        # docs/opcua.md: a Bad value is served as null; the store keeps the last
                        # value with the meter's read time, older than bad-after (never made fresh)
                        dv = await read_dv(client, ns, "f1.voltage")
                        assert dv.Value.Value is None, dv
                        held = app.store.get("f1.voltage")
                        assert held is not None and held.value is not None
                        assert held.source_time is not None
                        assert datetime.now(UTC) - held.source_time > timedelta(seconds=1)
                    if fault == "bad_crc":
                        assert crc_before is not None
                        assert app.store.get("channel:gw.crc_errors").value > crc_before.value  # type: ignore[union-attr]
                    if fault == "garbage":
                        assert app.store.get("channel:gw.garbage_bytes").value > 0  # type: ignore[union-attr]

                    _switch(faulty, fault, False)
                    await wait_for(lambda: faulty_quality(Quality.Good), 15, f"{fault}: f1 recovers")

                    async def status_ok() -> bool:
                        return (await read_status(mb, app, "f1")).state == "ok"

                    await wait_for(status_ok, 10, f"{fault}: f1 state ok")
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads, (baseline, after)
