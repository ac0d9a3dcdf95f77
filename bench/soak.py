"""Soak: a bounded run of the whole bridge under switching faults, watching for growth.

One ``BridgeApp`` (collector, OPC UA and Modbus servers) polls simulated meters behind a TCP
gateway and behind a dialling GSM module (simulators in this process) every second, while faults
switch every few seconds: meters go silent and recover, the modem's connection is cut (it dials
again), the gateway drops its connection, Modbus and OPC UA clients connect, read and disconnect.
Every ``--sample`` seconds: asyncio tasks, threads, RSS and tracemalloc's traced memory; at the end
the growth from the first sample (taken after a warm-up) and tracemalloc's top growth by line.

Run: ``.venv/bin/python -m bench.soak [--minutes 3] [--sample 30]`` (``make soak``)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import random
import threading
import time
import tracemalloc
from dataclasses import dataclass, replace

from bench.measure import ROOT, free_port, kib, mib, rss_bytes, table
from bench.sites import MODEL, imei
from bridge.app import BridgeApp
from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    MeterConfig,
    ModbusSettings,
    OpcUaSettings,
    PollGroup,
    SiteMapping,
    StatusSettings,
    TagConfig,
    TcpClientSettings,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.simulator import DialOutModem, SimulatedBus, SimulatedMeter, TcpMeterServer

REGISTERS = ("voltage", "current", "power_active", "energy_active_import_total")


@dataclass(slots=True)
class Sample:
    """One look at the process."""

    at: float
    tasks: int
    threads: int
    rss: int
    traced: int
    snapshot: tracemalloc.Snapshot | None


def soak_site(gw_port: int, meters: int, opcua_port: int, modbus_port: int) -> SiteMapping:
    gw = ChannelConfig(
        "gw", ChannelKind.TCP_CLIENT, tcp=TcpClientSettings("127.0.0.1", gw_port, 1.0),
        response_timeout=0.3, retries=0, reconnect_min=0.1, reconnect_max=1.0, frame_gap=0.0,
    )  # fmt: skip
    gsm = replace(gw, name="gsm", kind=ChannelKind.DIAL_IN, tcp=None, dial_in=DialInSettings("gsm", imei(1)))
    channels = (gw, gsm)
    mets = tuple(
        MeterConfig(f"gw{a}", "gw", MODEL, template_for_model(MODEL), a) for a in range(1, meters + 1)
    ) + tuple(MeterConfig(f"gsm{a}", "gsm", MODEL, template_for_model(MODEL), a) for a in range(1, 3))
    return SiteMapping(
        source="<bench soak>",
        templates=builtin_templates(),
        listeners=(ListenerConfig("gsm", "127.0.0.1", 0, IdentifyMethod.IMEI, identify_timeout=2.0),),
        channels=channels,
        meters=mets,
        poll_groups=(PollGroup("fast", tuple(m.name for m in mets), REGISTERS, interval=1.0),),
        tags=tuple(TagConfig(r, m.name, r) for m in mets for r in REGISTERS),
        opcua=OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/milur-bridge"),
        modbus=ModbusSettings(host="127.0.0.1", port=modbus_port),
        status=StatusSettings(enabled=False),
    )


async def opcua_visit(url: str, keys: list[str], rng: random.Random) -> None:
    """Connect, read some tags (and subscribe now and then), disconnect."""
    from asyncua import Client, ua

    async with Client(url, timeout=5) as client:
        ns = await client.get_namespace_index("urn:milur-bridge")
        nodes = [client.get_node(ua.NodeId(k, ns)) for k in rng.sample(keys, min(8, len(keys)))]
        await client.read_values(nodes)
        if rng.random() < 0.5:
            sub = await client.create_subscription(100, None)
            await sub.subscribe_data_change(nodes)
            await asyncio.sleep(0.5)
            await sub.delete()


async def modbus_visit(port: int, units: int, rng: random.Random) -> None:
    """Connect, read a status block and some data, disconnect."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3)
    await client.connect()
    try:
        unit = rng.randint(1, units)
        await client.read_holding_registers(0, count=5, device_id=unit)
        await client.read_holding_registers(100, count=8, device_id=unit)
    finally:
        client.close()


async def faults(
    rng: random.Random, sims: list[SimulatedMeter], modem: DialOutModem, server: TcpMeterServer,
    app: BridgeApp, keys: list[str], units: int, until: float, counts: dict[str, int],
) -> None:  # fmt: skip
    """Switch one fault (or run one client visit) every 0.5–3 s until ``until``."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        action = rng.choice(("silence", "silence", "modem", "gateway", "opcua", "modbus", "modbus"))
        counts[action] = counts.get(action, 0) + 1
        try:
            if action == "silence":
                sim = rng.choice(sims)
                sim.faults.silent = not sim.faults.silent
            elif action == "modem":
                modem.drop()
            elif action == "gateway":
                server.drop()
            elif action == "opcua":
                assert app.opcua is not None
                await asyncio.wait_for(opcua_visit(app.mapping.opcua.endpoint, keys, rng), 15)
            else:
                assert app.modbus is not None
                await asyncio.wait_for(modbus_visit(app.modbus.port, units, rng), 10)
        except (OSError, TimeoutError) as exc:
            counts["client errors"] = counts.get("client errors", 0) + 1
            logging.getLogger("bench.soak").debug("client visit failed: %r", exc)


def sample(start: float) -> Sample:
    gc.collect()
    return Sample(
        time.perf_counter() - start, len(asyncio.all_tasks()), threading.active_count(), rss_bytes(),
        tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot(),
    )  # fmt: skip


async def bench(args: argparse.Namespace) -> str:
    rng = random.Random(args.seed)
    gw_sims = [SimulatedMeter(MODEL, a, seed=a) for a in range(1, args.meters + 1)]
    gsm_sims = [SimulatedMeter(MODEL, a, seed=100 + a) for a in range(1, 3)]
    counts: dict[str, int] = {}
    samples: list[Sample] = []
    duration = args.seconds if args.seconds else args.minutes * 60
    async with TcpMeterServer(SimulatedBus(gw_sims)) as server:
        mapping = soak_site(server.port, args.meters, free_port(), free_port())
        app = BridgeApp(mapping)
        await app.start()
        assert app.collector is not None
        port = app.collector.listeners["gsm"].port
        modem = DialOutModem(SimulatedBus(gsm_sims), "127.0.0.1", port, imei(1), reconnect_delay=0.3)
        await modem.start()
        # traced from here: the growth of a running bridge, not the start-up's allocations
        tracemalloc.start(1)
        try:
            await asyncio.sleep(min(args.warmup, duration / 4))
            loop = asyncio.get_running_loop()
            start = time.perf_counter()
            until = loop.time() + duration
            keys = [t.key for t in mapping.tags]
            fault_task = asyncio.create_task(
                faults(rng, gw_sims + gsm_sims, modem, server, app, keys, len(mapping.meters), until, counts)
            )
            samples.append(sample(start))
            while loop.time() < until:
                await asyncio.sleep(min(args.sample, max(0.0, until - loop.time())))
                if len(samples) > 1:
                    samples[-1].snapshot = None  # keep only the first and the latest snapshot
                samples.append(sample(start))
            await fault_task
        finally:
            await modem.stop()
            await app.stop()
    tracemalloc.stop()
    return report(args, duration, samples, counts)


def report(args: argparse.Namespace, duration: float, samples: list[Sample], counts: dict[str, int]) -> str:
    rows = [[f"{s.at:.0f} s", s.tasks, s.threads, mib(s.rss), mib(s.traced)] for s in samples]
    first, last = samples[0], samples[-1]
    # the second half shows a leak apart from caches filling up during the first minutes
    mid = samples[len(samples) // 2]
    assert last.snapshot is not None and first.snapshot is not None
    growth = last.snapshot.compare_to(first.snapshot, "lineno")[:8]
    top = [[f"`{g.traceback[0].filename.split('site-packages/')[-1].replace(ROOT_TEXT, '')}:"
            f"{g.traceback[0].lineno}`", kib(g.size_diff), f"{g.count_diff:+d}"] for g in growth]  # fmt: skip
    text = [
        "## Soak",
        "",
        f"{duration / 60:.1f} min, {args.meters} meters behind a TCP gateway and 2 behind a dialling modem, "
        f"{len(REGISTERS)} registers each polled every second, OPC UA and Modbus served; faults and client "
        f"visits every 0.5–3 s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".",
        "",
        table(["time", "tasks", "threads", "RSS", "traced since start (tracemalloc)"], rows),
        "",
        f"Growth first → last sample: tasks {last.tasks - first.tasks:+d}, threads "
        f"{last.threads - first.threads:+d}, RSS {kib(last.rss - first.rss)}, "
        f"traced {kib(last.traced - first.traced)}; "
        f"second half only (from {mid.at:.0f} s): RSS {kib(last.rss - mid.rss)}, "
        f"traced {kib(last.traced - mid.traced)}.",
        "",
        "Top growth by line (tracemalloc, first → last sample):",
        "",
        table(["where", "growth", "blocks"], top),
    ]
    return "\n".join(text) + "\n"


ROOT_TEXT = str(ROOT) + "/"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=0.0, help="overrides --minutes (tests)")
    p.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds before the first sample")
    p.add_argument("--meters", type=int, default=6, help="meters behind the TCP gateway")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.CRITICAL)
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
