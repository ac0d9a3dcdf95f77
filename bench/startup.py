"""Start-up: time from start to serving, and resident memory, for a large mapping.

A mapping of 1,000 meters × 20 tags (serial buses that are never reachable, so nothing is
polled) is started as ``milur-bridge run`` would start it: ``BridgeApp.start()`` builds the OPC UA
address space (tags + meter diagnostics) and the Modbus map, and both servers listen. The same is
done with a bare asyncua server holding the same variables (``bench/opcua_bench.py``'s naive
``add_*`` build) and no Modbus. Each runs in a fresh process; a parent process measures the time
from spawning it to a TCP connection accepted on the OPC UA port, and reads the child's RSS then.

Run: ``.venv/bin/python -m bench.startup [--meters 1000] [--tags 20] [--repeat 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import time

from bench.measure import ROOT, free_port, mib, rss_bytes, table, verdict


# ------------------------------------------------------------------------------ child processes
async def serve_bridge(meters: int, tags: int, opcua_port: int, modbus_port: int) -> None:
    from bench.sites import serial_site
    from bridge.app import BridgeApp

    mapping = serial_site(meters, tags, opcua_port, modbus_port)
    app = BridgeApp(mapping)
    t0 = time.perf_counter()
    await app.start()
    await report_and_wait(time.perf_counter() - t0, len(mapping.tags))
    await app.stop()


async def serve_bare(meters: int, tags: int, opcua_port: int) -> None:
    from asyncua import Server

    from bench.opcua_bench import bare_build
    from bench.sites import serial_site

    mapping = serial_site(meters, tags, opcua_port, 0)
    t0 = time.perf_counter()
    server = Server()
    await server.init()
    server.set_endpoint(mapping.opcua.endpoint)
    ns = await server.register_namespace("urn:milur-bridge")
    nodes = await bare_build(server, ns, mapping)
    await server.start()
    await report_and_wait(time.perf_counter() - t0, len(nodes))
    await server.stop()


async def report_and_wait(start_seconds: float, variables: int) -> None:
    gc.collect()
    print(json.dumps({"start": start_seconds, "variables": variables}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # parent closes stdin


# ------------------------------------------------------------------------------------- parent
async def measure(role: str, meters: int, tags: int) -> dict[str, float]:
    """Spawn one server process; time to an accepted OPC UA connection, its RSS then."""
    opcua_port, modbus_port = free_port(), free_port()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.startup", "--role", role, "--meters", str(meters),
        "--tags", str(tags), "--opcua-port", str(opcua_port), "--modbus-port", str(modbus_port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 600)
        while True:  # serving = the OPC UA port accepts a connection
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", opcua_port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            break
        serving = time.perf_counter() - t0
        rss = rss_bytes(proc.pid)
        child = json.loads(line)
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return {"serving": serving, "start": child["start"], "rss": rss, "variables": child["variables"]}


async def bench(args: argparse.Namespace) -> str:
    runs: dict[str, list[dict[str, float]]] = {"bridge": [], "bare": []}
    for _ in range(args.repeat):
        for role in runs:
            runs[role].append(await measure(role, args.meters, args.tags))

    def med(role: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[role])

    ratio_serving = med("bridge", "serving") / med("bare", "serving")
    ratio_rss = med("bridge", "rss") / med("bare", "rss")
    rows = [
        ["spawn → OPC UA port serving", f"{med('bridge', 'serving'):.2f} s",
         f"{med('bare', 'serving'):.2f} s", f"**{ratio_serving:.2f}×**", "≤ 1.2×",
         verdict(ratio_serving, 1.2)],
        ["start() → listening (in process)", f"{med('bridge', 'start'):.2f} s",
         f"{med('bare', 'start'):.2f} s", f"{med('bridge', 'start') / med('bare', 'start'):.2f}×", "", ""],
        ["resident memory when serving", mib(med("bridge", "rss")), mib(med("bare", "rss")),
         f"**{ratio_rss:.2f}×**", "≤ 1.2×", verdict(ratio_rss, 1.2)],
        ["OPC UA variables", f"{med('bridge', 'variables'):.0f} tags (+ diagnostics)",
         f"{med('bare', 'variables'):.0f} tags (+ diagnostics)", "", "", ""],
    ]  # fmt: skip
    return (
        f"## Start-up\n\n{args.meters} meters × {args.tags} tags: the bridge (OPC UA address space with "
        "diagnostics, Modbus map (flat), collector) vs a bare asyncua server with the same variables; "
        f"median of {args.repeat} run(s), a fresh process each.\n\n"
        + table(["figure", "bridge", "bare asyncua", "ratio", "target", ""], rows)
        + "\n"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--tags", type=int, default=20)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--role", choices=("parent", "bridge", "bare"), default="parent", help=argparse.SUPPRESS)
    p.add_argument("--opcua-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--modbus-port", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    if args.role == "bridge":
        asyncio.run(serve_bridge(args.meters, args.tags, args.opcua_port, args.modbus_port))
    elif args.role == "bare":
        asyncio.run(serve_bare(args.meters, args.tags, args.opcua_port))
    else:
        print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
