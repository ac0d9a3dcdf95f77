"""Clients that misbehave, and a mapping reload, under the whole bridge.

OPC UA clients that vanish in the middle of a subscription, Modbus clients that send half a
header or hold their connection open and idle, and ``BridgeApp.reload`` with a changed mapping
file while clients read continuously. The bridge keeps serving healthy meters, and the number of
its tasks and threads stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.simulator import SimulatedBus, SimulatedMeter, TcpMeterServer
from bridge.tags import Quality

from .bridge_rig import (
    NAMESPACE,
    ChannelSpec,
    MeterSpec,
    SiteSpec,
    healthy_and_moving,
    modbus_client,
    opcua_client,
    placement,
    quality_of,
    read_dv,
    read_float,
    running_bridge,
    settled_census,
    tcp,
    wait_for,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftovers")]


class Changes:
    """A subscription handler counting data changes."""

    def __init__(self) -> None:
        self.count = 0

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        self.count += 1


def _site(port: int, **kw: object) -> SiteSpec:
    return SiteSpec([ChannelSpec("gw", tcp(port), [MeterSpec("h1", 1), MeterSpec("h2", 2)])], **kw)  # type: ignore[arg-type]


async def _vanish_mid_subscription(endpoint: str) -> None:
    """A client subscribes, gets notifications, then its network goes away (no goodbye)."""
    client = Client(endpoint, timeout=3)
    client.session_timeout = 5000  # ms, asyncua's minimum: the orphan is closed after it
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE)
        handler = Changes()
        sub = await client.create_subscription(50, handler)
        nodes = [client.get_node(ua.NodeId(f"{m}.voltage", ns, ua.NodeIdType.String))
                 for m in ("h1", "h2")]
        await sub.subscribe_data_change(nodes)
        await wait_for(_async(lambda: handler.count >= 4), 10, "notifications")
        assert client.uaclient.protocol is not None
        client.uaclient.protocol.transport.abort()  # no CloseSession, no CloseSecureChannel
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def test_opcua_clients_vanishing_mid_subscription(tmp_path: Path) -> None:
    meters = [SimulatedMeter("105", 1), SimulatedMeter("105", 2)]
    async with TcpMeterServer(SimulatedBus(meters)) as gw:
        spec = _site(gw.port)
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            baseline = await settled_census()
            for _ in range(3):
                await _vanish_mid_subscription(spec.endpoint)
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            assert app.opcua is not None
            await wait_for(_async(lambda: app.opcua.metrics()["milur_opcua_connections"] == 0), 10,  # type: ignore[union-attr]
                           "vanished OPC UA connections released")
            # an orphaned session (kept for reactivation) lives until its timeout, then it is
            # gone with its subscription: nothing stays behind for good
            await wait_for(
                _async(lambda: len(asyncio.all_tasks()) <= baseline.tasks + 2), 15,
                "orphaned sessions closed after their timeout",
            )
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            assert threading_count() <= baseline.threads
            # one more vanishes just before the bridge stops: stop() leaves no task of it behind
            await _vanish_mid_subscription(spec.endpoint)


def threading_count() -> int:
    return threading.active_count()


async def test_modbus_truncated_frames_and_idle_connections(tmp_path: Path) -> None:
    meters = [SimulatedMeter("105", 1), SimulatedMeter("105", 2)]
    async with TcpMeterServer(SimulatedBus(meters)) as gw:
        spec = _site(gw.port, modbus_attrs='max-connections="8"')
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            assert app.modbus is not None
            port = app.modbus.port
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            baseline = await settled_census()
            p = placement(app, "h1.voltage")
            request = struct.pack(">HHHBBHH", 1, 0, 6, p.unit_id, 3, p.address, 2)
            held = []
            try:
                # half a header, a header without its PDU, and four connections that say nothing:
                # seven of the eight connections allowed
                for data in (request[:4], request[:7], request[:9]) + (b"",) * 4:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(data)
                    await writer.drain()
                    held.append((reader, writer))
                await asyncio.sleep(0.3)
                # the server still answers on a fresh connection while those are held open
                await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
                # ... and on the connection that sent half a header, once the rest arrives
                reader, writer = held[0]
                writer.write(request[4:])
                header = await asyncio.wait_for(reader.readexactly(9), 5)
                assert header[7:9] == b"\x03\x04", header
                await asyncio.wait_for(reader.readexactly(4), 5)
                # idle connections hold their slots (docs/security.md): the ninth is refused
                held.append(await asyncio.open_connection("127.0.0.1", port))
                refused, _ = await asyncio.open_connection("127.0.0.1", port)
                held.append((refused, _))
                assert await asyncio.wait_for(refused.read(10), 5) == b""
            finally:
                for _, writer in held:
                    writer.transport.abort()
            await wait_for(_async(lambda: app.modbus.connections() == 0), 10, "connections released")  # type: ignore[union-attr]
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads


async def test_reload_with_a_changed_mapping_while_clients_poll(tmp_path: Path) -> None:
    meters = [SimulatedMeter("105", 1), SimulatedMeter("105", 2), SimulatedMeter("105", 3)]
    async with TcpMeterServer(SimulatedBus(meters)) as gw:
        path = tmp_path / "site.xml"
        spec = _site(gw.port)
        async with running_bridge(path, spec) as app:
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            baseline = await settled_census()
            stop = asyncio.Event()
            errors: list[str] = []
            reads = {"modbus": 0, "opcua": 0}

            async def modbus_loop() -> None:
                async with modbus_client(app) as mb:
                    while not stop.is_set():
                        try:
                            value = await read_float(mb, app, "h2.voltage")
                            assert value == value, "NaN"
                            reads["modbus"] += 1
                        except Exception as exc:  # noqa: BLE001 — every failure is a finding
                            errors.append(f"modbus: {exc!r}")
                        await asyncio.sleep(0.02)

            async def opcua_loop() -> None:
                async with opcua_client(spec.endpoint) as (client, ns):
                    while not stop.is_set():
                        dv = await read_dv(client, ns, "h2.voltage")
                        if quality_of(dv) is not Quality.Good:
                            errors.append(f"opcua: h2.voltage {dv.StatusCode}")
                        reads["opcua"] += 1
                        await asyncio.sleep(0.02)

            loops = [asyncio.create_task(modbus_loop()), asyncio.create_task(opcua_loop())]
            try:
                for round_ in range(3):
                    # h3 comes and goes, h1 gains and loses a register; h2 never changes
                    with_h3 = round_ % 2 == 0
                    changed = SiteSpec(
                        [ChannelSpec("gw", tcp(gw.port), [
                            MeterSpec("h1", 1, registers="voltage frequency current" if with_h3
                                      else "voltage frequency"),
                            MeterSpec("h2", 2),
                            *([MeterSpec("h3", 3)] if with_h3 else []),
                        ])],
                        opcua_port=spec.opcua_port,
                    )
                    path.write_text(changed.xml())  # noqa: ASYNC240 — test set-up
                    before = dict(reads)
                    ok, problems = await app.reload()
                    assert ok, problems
                    await wait_for(
                        _async(lambda b=before: reads["modbus"] > b["modbus"] + 5
                               and reads["opcua"] > b["opcua"] + 5),
                        10, "clients keep reading after the reload",
                    )
                    if with_h3:
                        await healthy_and_moving(app, spec.endpoint, ["h3"])
                        await healthy_and_moving(app, spec.endpoint, ["h1"], register="current")
                    else:
                        assert app.store.get("h3.voltage") is None
                        assert all(not k.startswith("h3.") for k in app.store.keys())
            finally:
                stop.set()
                await asyncio.gather(*loops, return_exceptions=True)
            # the reads that ran through three reloads never saw an error or a non-Good h2
            assert not errors, errors[:10]
            # a broken file is refused and the running mapping stays
            path.write_text(changed.xml().replace('<meter name="h2"', '<meter name="h2" bogus="1"'))  # noqa: ASYNC240
            ok, problems = await app.reload()
            assert not ok and any("bogus" in p for p in problems), problems
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads


def _async(predicate):  # noqa: ANN001, ANN202
    async def check() -> bool:
        return bool(predicate())

    return check
