"""OPC UA publisher benchmark: prints figures beside a bare asyncua server (no assertions).

1. Address-space build, 1,000 meters × 20 tags (+ diagnostics): the publisher's builder vs a bare
   build with ``add_folder`` / ``add_object`` / ``add_variable`` of the same tree.
2. Latency store → client notification at a steady 1,000 changes/s, publishing interval 100 ms,
   one subscribed client: p50 / p99 for the publisher vs bare ``write_attribute_value`` writes.
3. Throughput: a flood of changes; tag updates/s until the client has seen the last value of
   every tag, publisher vs bare.

Run: ``.venv/bin/python bench/opcua_bench.py [--meters 1000] [--tags 20] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Client, Server, ua

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.config.model import (  # noqa: E402
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    OpcUaSettings,
    RegisterDef,
    RegisterFormat,
    SerialSettings,
    SiteMapping,
    TagConfig,
    Template,
)
from bridge.publishers.opcua import OpcUaPublisher  # noqa: E402
from bridge.publishers.opcua_space import AddressSpaceBuilder  # noqa: E402
from bridge.tags import TagStore  # noqa: E402
from bridge.tags.keys import METER_DIAG_FIELDS  # noqa: E402

UNITS = ("V", "A", "W", "var", "VA", "Hz", "kWh", "kvarh")


def site(meters: int, tags: int, endpoint: str, channels: int = 10) -> SiteMapping:
    regs = {
        f"r{i}": RegisterDef(f"r{i}", i, RegisterFormat.U32, 0.01, UNITS[i % len(UNITS)], f"register {i}")
        for i in range(tags)
    }
    chans = tuple(
        ChannelConfig(f"bus{c}", ChannelKind.SERIAL, serial=SerialSettings(f"/dev/ttyS{c}"))
        for c in range(channels)
    )
    mets = tuple(
        MeterConfig(f"m{i}", chans[i % channels].name, "307", "bench", i % 250 + 1) for i in range(meters)
    )
    return SiteMapping(
        source="<bench>",
        templates={"bench": Template("bench", ("307",), regs)},
        listeners=(),
        channels=chans,
        meters=mets,
        poll_groups=(),
        tags=tuple(TagConfig(r, m.name, r) for m in mets for r in regs),
        opcua=OpcUaSettings(endpoint=endpoint),
    )


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"opc.tcp://127.0.0.1:{port}/bench"


# --------------------------------------------------------------------------- build
async def bare_build(server: Server, ns: int, mapping: SiteMapping) -> dict[str, ua.NodeId]:
    """The same tree the naive way: one awaited add_* call per node, plain Double variables."""
    nodes: dict[str, ua.NodeId] = {}
    objects = server.nodes.objects
    folders = {}
    for ch in mapping.channels:
        folders[ch.name] = await objects.add_folder(ua.NodeId(f"channel:{ch.name}", ns), ch.name)
    by_meter: dict[str, list[TagConfig]] = {}
    for t in mapping.tags:
        by_meter.setdefault(t.meter, []).append(t)
    for m in mapping.meters:
        obj = await folders[m.channel].add_object(ua.NodeId(m.name, ns), m.name)
        for t in by_meter[m.name]:
            var = await obj.add_variable(ua.NodeId(t.key, ns), t.name, 0.0, ua.VariantType.Double)
            nodes[t.key] = var.nodeid
        diag = await obj.add_folder(ua.NodeId(f"{m.name}.diag", ns), "Diagnostics")
        for f in METER_DIAG_FIELDS:
            await diag.add_variable(ua.NodeId(f"{m.name}.diag.{f}", ns), f, "")
    return nodes


async def timed_build(kind: str, mapping: SiteMapping) -> float:
    server = Server()
    await server.init()
    ns = await server.register_namespace("urn:milur-bridge")
    gc.collect()
    t0 = time.perf_counter()
    if kind == "bare":
        await bare_build(server, ns, mapping)
    else:
        await AddressSpaceBuilder(server, ns).build(mapping)
    elapsed = time.perf_counter() - t0
    del server
    gc.collect()
    return elapsed


# --------------------------------------------------------------------------- latency / throughput
class Receiver:
    """Subscription handler recording when each value arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[float, float] = {}
        self.count = 0
        self.event = asyncio.Event()
        self.expect: set[float] = set()

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        now = time.perf_counter()
        self.count += 1
        if isinstance(val, float):
            self.arrivals.setdefault(val, now)
            if val in self.expect:
                self.expect.discard(val)
                if not self.expect:
                    self.event.set()


async def run_traffic(
    endpoint: str,
    node_ids: list[ua.NodeId],
    write: Callable[[int, float], Awaitable[None] | None],
    seconds: float,
) -> tuple[list[float], float]:
    """Steady 1,000 changes/s, then a flood; returns latencies (ms) and flood updates/s."""
    receiver = Receiver()
    client = Client(endpoint, timeout=10)
    async with client:
        sub = await client.create_subscription(100, receiver)
        await sub.subscribe_data_change([client.get_node(n) for n in node_ids], queuesize=1)
        await asyncio.sleep(0.5)
        sent: dict[float, float] = {}
        seq = 0
        rate = 1000
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            tick = time.perf_counter()
            for _ in range(rate // 100):  # 10 ms slices
                seq += 1
                value = seq + 0.5
                sent[value] = time.perf_counter()
                result = write(seq % len(node_ids), value)
                if result is not None:
                    await result
            await asyncio.sleep(max(0.0, 0.01 - (time.perf_counter() - tick)))
        await asyncio.sleep(0.5)
        latencies = [(receiver.arrivals[v] - t) * 1000 for v, t in sent.items() if v in receiver.arrivals]

        # flood: every tag changes `rounds` times as fast as we can; wait for each tag's last value
        rounds = 5
        receiver.expect = set()
        t0 = time.perf_counter()
        for r in range(rounds):
            for i in range(len(node_ids)):
                seq += 1
                value = seq + 0.5
                if r == rounds - 1:
                    receiver.expect.add(value)
                result = write(i, value)
                if result is not None:
                    await result
            await asyncio.sleep(0)
        await asyncio.wait_for(receiver.event.wait(), 60)
        flood = rounds * len(node_ids) / (time.perf_counter() - t0)
        await sub.delete()
    return latencies, flood


async def traffic_publisher(meters: int, tags: int, seconds: float) -> tuple[list[float], float]:
    endpoint = free_endpoint()
    mapping = site(meters, tags, endpoint)
    store = TagStore()
    store.define(t.key for t in mapping.tags)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    keys = [t.key for t in mapping.tags]
    node_ids = [ua.NodeId(k, pub.namespace_index) for k in keys]

    def write(i: int, value: float) -> None:
        store.set_good({keys[i]: value}, datetime.now(UTC))

    try:
        return await run_traffic(endpoint, node_ids, write, seconds)
    finally:
        await pub.stop()


async def traffic_bare(meters: int, tags: int, seconds: float) -> tuple[list[float], float]:
    endpoint = free_endpoint()
    mapping = site(meters, tags, endpoint)
    server = Server()
    await server.init()
    server.set_endpoint(endpoint)
    ns = await server.register_namespace("urn:milur-bridge")
    nodes = await bare_build(server, ns, mapping)
    node_ids = list(nodes.values())
    await server.start()

    async def write(i: int, value: float) -> None:
        now = datetime.now(UTC)
        dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now)
        await server.write_attribute_value(node_ids[i], dv)

    try:
        return await run_traffic(endpoint, node_ids, write, seconds)
    finally:
        await server.stop()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--traffic-meters", type=int, default=50, help="meters in the latency/flood runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the steady 1,000/s phase")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    mapping = site(args.meters, args.tags, "opc.tcp://127.0.0.1:0/bench")
    bare = await timed_build("bare", mapping)
    ours = await timed_build("publisher", mapping)
    print(f"build {args.meters} meters x {args.tags} tags (+{len(METER_DIAG_FIELDS)} diag each):")
    print(f"  bare asyncua add_*:   {bare:7.2f} s")
    print(f"  publisher builder:    {ours:7.2f} s   (units, descriptions, AnalogItemType)")
    print(f"  ratio publisher/bare: {ours / bare:7.2f}")

    n_tags = args.traffic_meters * args.tags
    for name, run in (("bare asyncua", traffic_bare), ("publisher", traffic_publisher)):
        lat, flood = await run(args.traffic_meters, args.tags, args.seconds)
        print(f"{name}: {n_tags} subscribed tags, 1,000 changes/s, publishing interval 100 ms")
        p50, p99 = pct(lat, 50), pct(lat, 99)
        print(f"  latency store->client p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({len(lat)} samples)")
        print(f"  flood: {flood:9.0f} tag updates/s delivered")
        if name == "bare asyncua":
            bare_lat, bare_flood = lat, flood
    r50 = pct(lat, 50) / pct(bare_lat, 50)
    r99 = pct(lat, 99) / pct(bare_lat, 99)
    print(f"ratios publisher/bare: p50 {r50:.2f}  p99 {r99:.2f}  updates/s {flood / bare_flood:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
