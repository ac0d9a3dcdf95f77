"""Polling benchmark: the cost of idle dial-in channels, and poll throughput through a gateway.

1. Idle: N dial-in channels whose modules never call (one meter each). Prints the tasks created,
   the Python memory allocated per channel (tracemalloc) and the process CPU time spent per
   second of idling while poll groups keep firing (a trigger only enqueues one job per channel).
2. Gateway: M simulated meters behind one TCP socket (the simulator in this process), one poll
   group over all of them at a short interval; prints register reads per second and the bridge's
   share of CPU time. Prints only; no assertions.

    .venv/bin/python bench/polling_bench.py [--channels 1000 5000] [--meters 20] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "polling"))

from site_builder import (  # noqa: E402
    dial_in_channel,
    listener,
    meter,
    site,
    tcp_channel,
)

from bridge.polling.collector import Collector  # noqa: E402
from bridge.simulator.bus import SimulatedBus  # noqa: E402
from bridge.simulator.meter import SimulatedMeter  # noqa: E402
from bridge.simulator.serving import TcpMeterServer  # noqa: E402
from bridge.tags import TagStore  # noqa: E402


async def idle_channels(n: int, seconds: float) -> None:
    mapping = site(
        [dial_in_channel(f"c{i}", "gsm", f"35{i:013d}") for i in range(n)],
        [meter(f"m{i}", f"c{i}", 1) for i in range(n)],
        interval=0.5,
        listeners=[listener("gsm")],
    )
    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    collector = Collector(mapping, TagStore())
    await collector.start()
    await asyncio.sleep(0.5)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tasks = len(asyncio.all_tasks()) - tasks_before
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    await collector.stop()
    print(
        f"idle dial-in channels: {n:6d}  tasks {tasks:6d}  "
        f"memory/channel {(used - base) / n / 1024:6.1f} KiB  "
        f"CPU while idle {cpu / wall * 1000:6.1f} ms/s  "
        f"triggers {collector.triggers.get('fast', 0)}"
    )


async def gateway(meters: int, seconds: float) -> None:
    sims = [SimulatedMeter("105", a) for a in range(1, meters + 1)]
    async with TcpMeterServer(SimulatedBus(sims)) as server:
        mapping = site(
            [tcp_channel("gw", server.port, frame_gap=0.0)],
            [meter(f"m{a}", "gw", a) for a in range(1, meters + 1)],
            registers=("voltage", "current", "power_active", "energy_active_import_total"),
            interval=0.05,
        )
        collector = Collector(mapping, TagStore())
        await collector.start()
        await asyncio.sleep(0.5)
        reads0 = sum(s.counters.requests for s in sims)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        reads = sum(s.counters.requests for s in sims) - reads0
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        await collector.stop()
    print(
        f"gateway, {meters} meters: {reads / wall:8.0f} requests/s  "
        f"CPU {cpu / max(reads, 1) * 1e6:6.0f} µs/request (bridge + simulator in one process)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    async def run() -> None:
        for n in args.channels:
            await idle_channels(n, args.seconds)
        await gateway(args.meters, args.seconds)

    asyncio.run(run())


if __name__ == "__main__":
    main()
