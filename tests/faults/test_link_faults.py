"""Channels that fail under the whole bridge: half-open TCP, a redialling modem, the same IMEI
twice, an unplugged serial adapter. Every test keeps a healthy meter on another channel and checks
it stays Good and moving on OPC UA and Modbus; the affected meter's quality tells the truth; the
number of tasks and threads does not grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.app import BridgeApp
from bridge.simulator import DialOutModem, PtyLine, SimulatedBus, SimulatedMeter, TcpMeterServer
from bridge.tags import Quality, TagChange

from .bridge_rig import (
    ChannelSpec,
    FreezableProxy,
    MeterSpec,
    SiteSpec,
    dial_in,
    healthy_and_moving,
    opcua_client,
    quality_of,
    read_dv,
    running_bridge,
    serial,
    settled_census,
    tcp,
    wait_for,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftovers")]

IMEI = "356938035643809"


class QualityLog:
    """Every quality a key takes in the store (what both publishers are told)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: list[Quality] = []

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        self.seen += [c.value.quality for c in changes if c.key == self.key]


def listener_of(app: BridgeApp):  # noqa: ANN201
    assert app.collector is not None
    return app.collector.listeners["gsm"]


async def opc_quality_is(endpoint: str, key: str, expected: Quality, within: float = 10) -> None:
    async with opcua_client(endpoint) as (client, ns):

        seen: list[Quality] = []

        async def check() -> bool:
            seen.append(quality_of(await read_dv(client, ns, key)))
            return seen[-1] is expected

        try:
            await wait_for(check, within, f"{key} {expected.name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; seen {sorted(set(q.name for q in seen))}") from None


async def test_half_open_gateway_socket_is_closed_and_reconnected(tmp_path: Path) -> None:
    gw_meters, solo_meter = [SimulatedMeter("105", 1), SimulatedMeter("105", 2)], SimulatedMeter("105", 7)
    async with TcpMeterServer(SimulatedBus(gw_meters)) as gw, FreezableProxy(gw.port) as proxy, \
            TcpMeterServer(SimulatedBus([solo_meter])) as solo:
        spec = SiteSpec([
            ChannelSpec("gw", tcp(proxy.port), [MeterSpec("g1", 1), MeterSpec("g2", 2)]),
            ChannelSpec("solo", tcp(solo.port), [MeterSpec("h2", 7)]),
        ])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            await healthy_and_moving(app, spec.endpoint, ["g1", "g2", "h2"])
            baseline = await settled_census()
            log = QualityLog("g1.voltage")
            app.store.add_listener(log)
            frozen_at = datetime.now(UTC)
            proxy.freeze()  # writes still succeed, nothing ever comes back
            await healthy_and_moving(app, spec.endpoint, ["h2"])
            # the bridge gives the silent socket up and connects again (a new data session works)
            await wait_for(_async(lambda: proxy.accepted >= 2), 15, "gateway reconnected")
            assert app.collector is not None
            assert app.collector.workers["gw"].link.stats.half_open_closes >= 1
            await wait_for(
                _async(lambda: (tv := app.store.get("g1.voltage")) is not None
                       and tv.quality is Quality.Good and tv.source_time > frozen_at),  # type: ignore[operator]
                15, "fresh g1 values after the reconnect",
            )
            app.store.remove_listener(log)
            # while the socket was silent, the values were not passed off as Good
            assert Quality.Uncertain_LastUsableValue in log.seen, log.seen
            await healthy_and_moving(app, spec.endpoint, ["g1", "g2", "h2"])
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads


async def test_modem_redialling_every_second_and_then_gone(tmp_path: Path) -> None:
    dialled, solo_meter = SimulatedMeter("105", 1), SimulatedMeter("105", 7)
    async with TcpMeterServer(SimulatedBus([solo_meter])) as solo:
        spec = SiteSpec([
            ChannelSpec("gsm", dial_in(IMEI), [MeterSpec("d1", 1)]),
            ChannelSpec("solo", tcp(solo.port), [MeterSpec("h2", 7)]),
        ])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            port = listener_of(app).port
            await opc_quality_is(spec.endpoint, "d1.voltage", Quality.Bad_NotConnected)
            modem = DialOutModem(SimulatedBus([dialled]), "127.0.0.1", port, IMEI, reconnect_delay=0.1)
            async with modem:
                await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                baseline = await settled_census()
                for _ in range(5):
                    await asyncio.sleep(0.5)
                    modem.drop()
                    assert listener_of(app).connection_count <= 2
                await wait_for(_async(lambda: modem.dials >= 6), 10, "modem dialled six times")
                await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                assert listener_of(app).connection_count == 1
                after = await settled_census()
                assert after.tasks <= baseline.tasks + 2, (baseline, after)
                assert after.threads <= baseline.threads
            # the module is gone for good: its meter says so, the others carry on
            await opc_quality_is(spec.endpoint, "d1.voltage", Quality.Bad_NotConnected)
            await healthy_and_moving(app, spec.endpoint, ["h2"])


async def test_same_imei_from_two_modules(tmp_path: Path) -> None:
    first, second = SimulatedMeter("105", 1), SimulatedMeter("105", 1)
    solo_meter = SimulatedMeter("105", 7)
    async with TcpMeterServer(SimulatedBus([solo_meter])) as solo:
        spec = SiteSpec([
            ChannelSpec("gsm", dial_in(IMEI), [MeterSpec("d1", 1)]),
            ChannelSpec("solo", tcp(solo.port), [MeterSpec("h2", 7)]),
        ])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            port = listener_of(app).port
            async with DialOutModem(SimulatedBus([first]), "127.0.0.1", port, IMEI, reconnect_delay=0.2):
                await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                baseline = await settled_census()
                # a second module (a cloned SIM, a swapped modem) with the same IMEI: the newest
                # connection wins each time, and they keep taking the channel from each other
                twin = DialOutModem(SimulatedBus([second]), "127.0.0.1", port, IMEI, reconnect_delay=0.2)
                async with twin:
                    for _ in range(30):
                        await asyncio.sleep(0.1)
                        assert listener_of(app).connection_count <= 3
                    await wait_for(_async(lambda: listener_of(app).stats.replaced >= 2), 10, "replaced")
                    await healthy_and_moving(app, spec.endpoint, ["h2"])
                assert second.counters.requests > 0  # the twin was polled while it held the channel
                await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                after = await settled_census()
                assert after.tasks <= baseline.tasks + 2, (baseline, after)
                assert after.threads <= baseline.threads


async def test_serial_adapter_unplugged_and_plugged_back(tmp_path: Path) -> None:
    on_wire, solo_meter = SimulatedMeter("105", 3), SimulatedMeter("105", 7)
    link = str(tmp_path / "ttyMILUR0")  # a stable name, like a udev symlink
    async with PtyLine(SimulatedBus([on_wire]), 9600, turnaround=0.01, link=link) as line, \
            TcpMeterServer(SimulatedBus([solo_meter])) as solo:
        spec = SiteSpec([
            ChannelSpec("rs485", serial(link), [MeterSpec("s1", 3)],
                        attrs='response-timeout="0.5" retries="0" reconnect-min="0.05" '
                              'reconnect-max="0.3"'),
            ChannelSpec("solo", tcp(solo.port), [MeterSpec("h2", 7)]),
        ])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            await healthy_and_moving(app, spec.endpoint, ["s1", "h2"])
            baseline = await settled_census()
            for _ in range(2):
                await line.close()  # the USB adapter is pulled out
                await opc_quality_is(spec.endpoint, "s1.voltage", Quality.Bad_NotConnected)
                assert app.store.get("channel:rs485.connected").value is False  # type: ignore[union-attr]
                await healthy_and_moving(app, spec.endpoint, ["h2"])
                await line.reopen()
                await healthy_and_moving(app, spec.endpoint, ["s1", "h2"])
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads


def _async(predicate):  # noqa: ANN001, ANN202
    async def check() -> bool:
        return bool(predicate())

    return check

