"""Modbus TCP server benchmark: the bridge's publisher beside a bare pymodbus server.

Each server runs in its own subprocess serving the same 100 holding registers (unit 1, addresses
100..199; the bridge serves them as 25 float64 tags). The parent drives raw asyncio clients that
read all 100 registers in one request, back to back, with 1 and 10 concurrent connections, and
prints requests/s, p50/p99 latency, the server's CPU time per request (utime + stime from
/proc/<pid>/stat) and the bridge/bare CPU ratio (target ≤ 1.1), with the asyncio and the uvloop
event loop. Prints only; no assertions. Default run ≈ 30 s.

    .venv/bin/python bench/modbus_bench.py [--seconds 2.5] [--clients 1 10] [--churn 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUEST_PDU = struct.pack(">BHH", 3, 100, 100)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
TAG_NAMES = (
    "frequency",
    "battery_voltage",
    "voltage_a",
    "voltage_b",
    "voltage_c",
    "current_a",
    "current_b",
    "current_c",
    "power_active_a",
    "power_active_b",
    "power_active_c",
    "power_active_total",
    "power_reactive_a",
    "power_reactive_b",
    "power_reactive_c",
    "power_reactive_total",
    "power_apparent_a",
    "power_apparent_b",
    "power_apparent_c",
    "power_apparent_total",
    "energy_active_import_total",
    "energy_active_import_t1",
    "energy_active_import_t2",
    "energy_reactive_import_total",
    "energy_active_export_total",
)


# --------------------------------------------------------------------------- servers (subprocess)
def bridge_mapping():
    from bridge.config.model import (
        ChannelConfig,
        ChannelKind,
        MeterConfig,
        ModbusSettings,
        ModbusType,
        SerialSettings,
        SiteMapping,
        TagConfig,
    )
    from bridge.config.templates import builtin_templates

    return SiteMapping(
        source="bench",
        templates=builtin_templates(),
        listeners=(),
        channels=(ChannelConfig("bus", ChannelKind.SERIAL, serial=SerialSettings("/dev/null")),),
        meters=(MeterConfig("m1", "bus", "307", "milur-3phase", 1),),
        poll_groups=(),
        tags=tuple(TagConfig(n, "m1", n) for n in TAG_NAMES),
        modbus=ModbusSettings(host="127.0.0.1", port=0, data_type=ModbusType.FLOAT64, max_connections=64),
    )


async def serve_bridge(churn: float) -> None:
    from bridge.publishers.modbus import ModbusPublisher
    from bridge.tags.store import TagStore

    store = TagStore()
    keys = [f"m1.{n}" for n in TAG_NAMES]
    store.define(keys)
    store.set_good({k: 1000.0 / (i + 3) for i, k in enumerate(keys)}, datetime.now(UTC))
    publisher = ModbusPublisher(bridge_mapping(), store)
    await publisher.start()

    async def change_values() -> None:  # every tag changes `churn` times a second
        step = 0
        while True:
            await asyncio.sleep(1.0 / churn)
            step += 1
            store.set_good({k: step + i / 7 for i, k in enumerate(keys)}, datetime.now(UTC))

    churner = asyncio.create_task(change_values()) if churn > 0 else None
    await wait_for_parent(publisher.port)
    if churner is not None:
        churner.cancel()
    await publisher.stop()


async def serve_bare() -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    values = [(i * 2654435761) & 0xFFFF for i in range(100)]
    device = SimDevice(1, simdata=[SimData(100, values=values, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    await wait_for_parent(server.transport.sockets[0].getsockname()[1])
    await server.shutdown()


async def wait_for_parent(port: int) -> None:
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


def serve(kind: str, use_uvloop: bool, churn: float) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    main = (lambda: serve_bridge(churn)) if kind == "bridge" else serve_bare
    factory = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


# --------------------------------------------------------------------------- load (parent)
@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float  # server CPU seconds during the run


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


async def client(port: int, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    count = 0
    try:
        while time.perf_counter() < deadline:
            tid = count & 0xFFFF
            start = time.perf_counter()
            writer.write(struct.pack(">HHHB", tid, 0, len(REQUEST_PDU) + 1, 1) + REQUEST_PDU)
            header = await reader.readexactly(7)
            body = await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
            latencies.append(time.perf_counter() - start)
            if body[0] != 3 or len(body) != 202 or header[:2] != struct.pack(">H", tid):
                raise RuntimeError(f"unexpected reply {header.hex()} {body[:4].hex()}")
            count += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return count


async def load(port: int, pid: int, clients: int, seconds: float) -> Result:
    await asyncio.gather(*(client(port, time.perf_counter() + 0.3, []) for _ in range(clients)))
    latencies: list[float] = []
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    deadline = started + seconds
    counts = await asyncio.gather(*(client(port, deadline, latencies) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return Result(sum(counts), elapsed, latencies, cpu_seconds(pid) - cpu_before)


def run_scenario(
    kind: str, use_uvloop: bool, clients: list[int], seconds: float, churn: float
) -> dict[int, Result]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--churn", str(churn)]
        + (["--uvloop"] if use_uvloop else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        results = {}
        for n in clients:
            results[n] = asyncio.run(load(port, process.pid, n, seconds))
        return results
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report(table: dict[tuple[str, bool, int], Result]) -> None:
    print(
        f"{'server':8} {'loop':8} {'clients':>7} {'requests':>9} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu µs/req':>11} {'cpu ratio':>10}"
    )
    for (kind, uv, n), r in table.items():
        lat = sorted(r.latencies)
        p50 = statistics.median(lat) * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        per_request = r.cpu / r.requests * 1e6
        bare = table.get(("bare", uv, n))
        ratio = f"{per_request / (bare.cpu / bare.requests * 1e6):.2f}x" if bare and kind == "bridge" else ""
        print(
            f"{kind:8} {'uvloop' if uv else 'asyncio':8} {n:7d} {r.requests:9d} "
            f"{r.requests / r.seconds:9.0f} {p50:8.3f} {p99:8.3f} {per_request:11.1f} {ratio:>10}"
        )
    print(
        f"(CPU from /proc/<pid>/stat in {1e3 / CLOCK_TICK:.0f} ms ticks; ratio = bridge/bare, "
        "target <= 1.10x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=("bridge", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.5, help="load time per scenario")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10])
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        metavar="HZ",
        help="the bridge's 25 tags all change HZ times a second during the run (default 0)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.uvloop, args.churn)
        return
    try:
        import uvloop  # noqa: F401

        loops = [False, True]
    except ImportError:
        loops = [False]
        print("uvloop is not installed: asyncio only")
    table: dict[tuple[str, bool, int], Result] = {}
    for uv in loops:
        for kind in ("bare", "bridge"):
            results = run_scenario(kind, uv, args.clients, args.seconds, args.churn)
            for n, result in results.items():
                table[(kind, uv, n)] = result
    if args.churn:
        print(f"bridge: its 25 tags change {args.churn:g} times a second during the runs")
    report(table)


if __name__ == "__main__":
    main()
