"""Dial-in scale: N GSM modules dial one listener, are identified and polled every cycle.

Three processes, so that the bridge's CPU and memory are its own:

- the **bridge** (this process): a ``BridgeApp`` with N dial-in channels (one meter, R registers
  each), its OPC UA and Modbus servers, on the event loop ``milur-bridge run`` uses;
- the **modems** (``--role modems``): N ``DialOutModem`` s, each with one simulated meter behind a
  simulated GPRS link that answers after a round trip of 300–800 ms (also the C3 identification);
- the **clients** (``--role clients``): one OPC UA client and one Modbus TCP client reading tags
  in a loop while the bridge polls (phase 2).

Printed: time until every module is identified, polls per second sustained and whether every
module was polled in each cycle, bridge CPU per poll, bridge memory per connection (RSS growth
from the started, idle bridge to all modules identified and polled — the OPC UA address space is
built before the baseline), and tags served per second on OPC UA and Modbus meanwhile.

Run: ``.venv/bin/python -m bench.dial_in_scale [--modules 1000] [--interval 10] [--cycles 2]
[--opcua-diagnostics all|meters|none]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import random
import sys
import time

from bench.measure import ROOT, free_port, kib, raise_nofile, rss_bytes, table, verdict
from bench.sites import REGISTERS_1PHASE, dial_in_site, imei
from bridge.app import BridgeApp
from bridge.config.model import ListenerConfig, SiteMapping
from bridge.publishers.modbus import event_loop_factory
from bridge.simulator import DialOutModem, SimulatedBus, SimulatedMeter
from bridge.simulator.bus import Answer

log = logging.getLogger("bench.dial_in_scale")


# ------------------------------------------------------------------------------- modems process
class GprsBus(SimulatedBus):
    """A bus behind a GPRS link: every answer (identification too) comes after ``rtt`` seconds."""

    def __init__(self, meters: list[SimulatedMeter], rtt: float) -> None:
        super().__init__(meters)
        self.rtt = rtt

    def route(self, address: int, width: int, func: int, data: bytes, imei: str | None) -> Answer | None:
        answer = super().route(address, width, func, data, imei)
        return None if answer is None else Answer(answer.payload, answer.delay + self.rtt)


async def modems_main(port: int, count: int, seed: int) -> None:
    """Dial ``count`` modules to 127.0.0.1:``port``; run until stdin closes."""
    rng = random.Random(seed)
    modems = [
        DialOutModem(
            GprsBus([SimulatedMeter("105", 1, seed=i)], rng.uniform(0.3, 0.8)),
            "127.0.0.1",
            port,
            imei(i),
            reconnect_delay=rng.uniform(0.5, 1.5),
        )  # fmt: skip
        for i in range(count)
    ]
    for modem in modems:
        await modem.start()
    print("dialling", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the bridge closes our stdin to stop us
    await asyncio.gather(*(m.stop() for m in modems))


# ------------------------------------------------------------------------------ clients process
async def clients_main(protocol: str, target: str, modules: int, registers: int, seconds: float) -> None:
    """Read every tag over one protocol in a loop for ``seconds``; print tags/s as JSON."""
    lost, slowest = False, 0.0
    if protocol == "opcua":
        rate, lost, slowest = await opcua_reader(target, modules, registers, seconds)
    else:
        rate = await modbus_reader(int(target), modules, registers, seconds)
    print(json.dumps({protocol: rate, f"{protocol}_lost": lost, f"{protocol}_slowest": slowest}), flush=True)


async def opcua_reader(url: str, modules: int, registers: int, seconds: float) -> tuple[float, bool, float]:
    """Tags/s read, whether the connection was lost, and the slowest read of one batch (s)."""
    from asyncua import Client, ua

    # asyncua's client probes the server's state every ``watchdog_intervall`` seconds with a probe
    # timeout of the same length (1 s by default) and, without auto-reconnect, marks itself
    # disconnected when one probe is late: every later request then fails at once with
    # ConnectionError('client is disconnected'). A server busy polling 10,000 modules may take
    # longer than 1 s to answer one read, so probe with the same patience as the requests.
    async with Client(url, timeout=30, watchdog_intervall=30) as client:
        ns = await client.get_namespace_index("urn:milur-bridge")
        names = REGISTERS_1PHASE[:registers]
        ids = [ua.NodeId(f"m{i}.{r}", ns) for i in range(modules) for r in names]
        nodes = [client.get_node(n) for n in ids]
        served, start, slowest = 0, time.perf_counter(), 0.0
        batch = 1000
        try:
            while time.perf_counter() - start < seconds:
                for offset in range(0, len(nodes), batch):
                    t_read = time.perf_counter()
                    values = await client.read_values(nodes[offset : offset + batch])
                    slowest = max(slowest, time.perf_counter() - t_read)
                    served += len(values)
                    if time.perf_counter() - start >= seconds:
                        break
        except (ConnectionError, TimeoutError) as exc:
            # a server too busy to answer in time: report what was served, and say so
            print(f"OPC UA client: {exc!r} after {time.perf_counter() - start:.1f} s", file=sys.stderr)
            return served / (time.perf_counter() - start), True, slowest
        return served / (time.perf_counter() - start), False, slowest


async def modbus_reader(port: int, modules: int, registers: int, seconds: float) -> float:
    from pymodbus.client import AsyncModbusTcpClient

    from bridge.config.modbus_map import STATUS_WORDS

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=10)
    await client.connect()
    try:
        first, words = modules * STATUS_WORDS, modules * registers * 2
        served, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for offset in range(0, words, 124):
                count = min(124, words - offset)
                reply = await client.read_holding_registers(first + offset, count=count, device_id=1)
                if not reply.isError():
                    served += count // 2
                if time.perf_counter() - start >= seconds:
                    break
        return served / (time.perf_counter() - start)
    finally:
        client.close()


# --------------------------------------------------------------------------- OPC UA space process
def with_diagnostics(mapping: SiteMapping, diagnostics: str) -> SiteMapping:
    """``mapping`` with ``<opcua diagnostics="...">`` set."""
    return dataclasses.replace(mapping, opcua=dataclasses.replace(mapping.opcua, diagnostics=diagnostics))


async def opcua_space_main(modules: int, registers: int, diagnostics: str) -> None:
    """RSS growth of starting the OPC UA publisher alone for the same mapping (printed as JSON)."""
    from bridge.publishers.opcua import OpcUaPublisher
    from bridge.tags import TagStore

    mapping = with_diagnostics(
        dial_in_site(modules, REGISTERS_1PHASE[:registers], 10.0, free_port(), 0), diagnostics
    )
    store = TagStore()
    store.define(t.key for t in mapping.tags)
    gc.collect()
    rss0 = rss_bytes()
    publisher = OpcUaPublisher(mapping, store)
    await publisher.start()
    gc.collect()
    print(json.dumps({"rss": rss_bytes() - rss0}), flush=True)
    await publisher.stop()


# ------------------------------------------------------------------------------- bridge process
async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dial_in_scale", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
    )  # fmt: skip


def link_totals(app: BridgeApp) -> int:
    assert app.collector is not None
    return sum(w.link.stats.responses for w in app.collector.workers.values())


def fresh_meters(app: BridgeApp, key_tag: str, since: float) -> int:
    """Meters whose ``key_tag`` was read (source time) after the wall-clock time ``since``."""
    count = 0
    for i in range(len(app.mapping.meters)):
        tv = app.store.get(f"m{i}.{key_tag}")
        if tv is not None and tv.source_time is not None and tv.source_time.timestamp() >= since:
            count += 1
    return count


async def bridge_main(args: argparse.Namespace) -> str:
    n, interval = args.modules, args.interval
    nofile = raise_nofile(2 * n + 1024)
    registers = REGISTERS_1PHASE[: args.registers]
    mapping = dial_in_site(
        n, registers, interval, free_port(), free_port(), max_unidentified=args.max_unidentified
    )
    mapping = with_diagnostics(mapping, args.opcua_diagnostics)
    gc.collect()
    rss_pre = rss_bytes()
    app = BridgeApp(mapping)
    t_start = time.perf_counter()
    await app.start()
    started = time.perf_counter() - t_start
    assert app.collector is not None
    listener = app.collector.listeners["gsm"]
    gc.collect()
    rss0 = rss_bytes()
    modems = await spawn("--role", "modems", "--port", str(listener.port), "--modules", str(n))
    clients: list[asyncio.subprocess.Process] = []
    try:
        assert modems.stdout is not None
        await modems.stdout.readline()  # "dialling"
        t0 = time.perf_counter()
        workers = list(app.collector.workers.values())
        identified_at: float | None = None
        while time.perf_counter() - t0 < args.identify_limit:
            if sum(w.connected for w in workers) >= n:
                identified_at = time.perf_counter() - t0
                break
            await asyncio.sleep(0.05)
        connected = sum(w.connected for w in workers)
        # let a whole cycle poll everyone, then measure cycles of polling alone
        await asyncio.sleep(interval + args.warmup)
        gc.collect()
        rss1 = rss_bytes()
        cycles = []
        for _ in range(args.cycles):
            wall0, cpu0, reads0 = time.time(), time.process_time(), link_totals(app)
            p0 = time.perf_counter()
            await asyncio.sleep(interval)
            cycles.append(
                (time.process_time() - cpu0, link_totals(app) - reads0, time.perf_counter() - p0,
                 fresh_meters(app, registers[-1], wall0 - 0.0))
            )  # fmt: skip
        # phase 2: the same polling while OPC UA and Modbus clients read every tag
        modbus_port = app.modbus.port if app.modbus is not None else 0
        opcua_url = mapping.opcua.endpoint
        reads0, p0, wall0 = link_totals(app), time.perf_counter(), time.time()
        common = ("--modules", str(n), "--registers", str(len(registers)), "--seconds", str(interval))
        clients = [await spawn("--role", "clients", "--protocol", "opcua", "--target", opcua_url, *common)]
        if modbus_port:
            clients.append(
                await spawn(
                    "--role", "clients", "--protocol", "modbus", "--target", str(modbus_port), *common
                )
            )
        served: dict[str, float | bool] = {}
        for proc in clients:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), interval + 120)
            served.update(json.loads(line or b"{}"))
        loaded_reads = (link_totals(app) - reads0) / (time.perf_counter() - p0)
        loaded_fresh = fresh_meters(app, registers[-1], wall0)
        stats = listener.stats
        accepts = (
            f"listener: {stats.accepted} connections accepted, {stats.identified} identified, "
            f"{stats.over_limit} closed over a limit, {stats.unidentified} not identified in time"
        )
    finally:
        t_stop = time.perf_counter()
        await app.stop()  # while the modems are still there: sessions are closed at once
        stopped = time.perf_counter() - t_stop
        for proc in (*clients, modems):
            if proc.returncode is None:
                assert proc.stdin is not None
                proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(modems.wait(), 30)
        if modems.returncode is None:
            modems.kill()
            await modems.wait()
        for proc in clients:
            await proc.wait()
    space = await spawn("--role", "opcua-space", "--modules", str(n), "--registers", str(len(registers)),
                        "--opcua-diagnostics", args.opcua_diagnostics)  # fmt: skip
    assert space.stdout is not None
    opcua_rss = json.loads(await space.stdout.readline())["rss"]
    await space.wait()
    memory = (rss_pre, rss0, rss1, opcua_rss)
    text = report(args, nofile, started, identified_at, connected, memory, cycles, loaded_reads,
                  loaded_fresh, served, mapping.modbus.enabled)  # fmt: skip
    return text + "\n" + accepts + f"; bridge stop {stopped:.1f} s.\n"


def report(
    args: argparse.Namespace, nofile: int, started: float, identified_at: float | None, connected: int,
    memory: tuple[int, int, int, int], cycles: list[tuple[float, int, float, int]], loaded_reads: float,
    loaded_fresh: int, served: dict[str, float | bool], modbus: bool,
) -> str:  # fmt: skip
    n, regs = args.modules, args.registers
    rss_pre, rss0, rss1, opcua_rss = memory
    unidentified = args.max_unidentified or ListenerConfig("default").max_unidentified
    bridge_per_module = (rss1 - rss_pre - opcua_rss) / max(n, 1)
    cpu = sum(c[0] for c in cycles)
    reads = sum(c[1] for c in cycles)
    wall = sum(c[2] for c in cycles)
    polls = reads / regs
    per_module = (rss1 - rss0) / max(n, 1)
    ident = f"{identified_at:.1f} s" if identified_at is not None else f"not all: {connected}/{n}"
    ident_target = verdict(identified_at, 60.0) if identified_at is not None else "MISSED"
    fresh = ", ".join(f"{c[3]}/{n}" for c in cycles)
    rows = [
        ["modules identified", ident, "≤ 60 s (for 10,000)", ident_target],
        ["polls per second (cycle of polling alone)", f"{polls / wall:.0f} ({reads / wall:.0f} reads/s)",
         f"{n / args.interval:.0f} (every module each {args.interval:g} s)",
         verdict(polls / wall, n / args.interval * 0.95, lower_is_better=False)],
        ["modules polled in each measured cycle", fresh, f"{n}/{n}",
         "met" if all(c[3] >= n for c in cycles) else "MISSED"],
        ["bridge CPU per poll",
         f"{cpu / max(polls, 1) * 1e3:.2f} ms ({cpu / max(reads, 1) * 1e6:.0f} µs/read)",
         "", f"bridge CPU {cpu / wall * 100:.0f} % of one core"],
        ["bridge memory per module, OPC UA address space excluded", kib(bridge_per_module), "≤ 64 KiB",
         verdict(bridge_per_module, 64 * 1024)],
        ["… of which per connection (RSS growth from idle to all connected and polled)",
         kib(per_module), "", ""],
        ["OPC UA address space per module (publisher alone, fresh process)", kib(opcua_rss / max(n, 1)), "",
         "excluded by the target"],
        ["OPC UA tags served per second (meanwhile)",
         opcua_text(served.get("opcua"), bool(served.get("opcua_lost"))),
         "", f"slowest read of 1,000 tags {float(served.get('opcua_slowest', 0.0)):.2f} s"],
        ["Modbus tags served per second (meanwhile)",
         f"{served.get('modbus', 0):.0f}" if modbus else "Modbus off: too many meters for one address space",
         "", ""],
        ["polling while served",
         f"{loaded_reads / regs:.0f} polls/s, {loaded_fresh}/{n} modules polled", "", ""],
    ]  # fmt: skip
    head = (
        f"## Dial-in scale\n\n{n} modules (IMEI listener, max_unidentified {unidentified}), "
        f"{regs} registers each, GPRS round trip 300–800 ms, poll interval {args.interval:g} s, "
        f'response timeout 3 s; <opcua diagnostics="{args.opcua_diagnostics}">; '
        f"RLIMIT_NOFILE {nofile}; bridge start {started:.1f} s, "
        f"bridge RSS {rss_pre / 2**20:.0f} MiB before start, {rss0 / 2**20:.0f} MiB started and idle, "
        f"{rss1 / 2**20:.0f} MiB with all modules; the OPC UA publisher alone grows RSS by "
        f"{opcua_rss / 2**20:.0f} MiB.\n"
    )
    return head + "\n" + table(["figure", "measured", "target", ""], rows) + "\n"


def opcua_text(rate: float | None, lost: bool) -> str:
    """The OPC UA client's figure, and whether it lost its connection mid-run."""
    if rate is None:
        return "no figure: the client process failed (see stderr)"
    if lost:
        return f"{rate:.0f}, then the client was disconnected (server too busy to answer in time)"
    return f"{rate:.0f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=("bridge", "modems", "clients", "opcua-space"), default="bridge")
    p.add_argument("--modules", type=int, default=1000)
    p.add_argument("--registers", type=int, default=5)
    p.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds")
    p.add_argument("--cycles", type=int, default=2, help="measured cycles of polling alone")
    p.add_argument(
        "--warmup", type=float, default=6.0, help="seconds after the first cycle, before measuring"
    )
    p.add_argument("--identify-limit", type=float, default=120.0)
    p.add_argument(
        "--max-unidentified", type=int, default=None, help="listener setting (default: its default)"
    )
    p.add_argument(
        "--opcua-diagnostics", choices=("all", "meters", "none"), default="all",
        help='<opcua diagnostics="..."> of the site (default: all)',
    )  # fmt: skip
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--protocol", choices=("opcua", "modbus"), default="opcua", help=argparse.SUPPRESS)
    p.add_argument("--target", default="", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.role == "modems":
        raise_nofile(2 * args.modules + 1024)
        runner_factory = event_loop_factory(dial_in_site(1, ("voltage",), 1, 1, 1).modbus)
        with asyncio.Runner(loop_factory=runner_factory) as runner:
            runner.run(modems_main(args.port, args.modules, seed=7))
    elif args.role == "opcua-space":
        asyncio.run(opcua_space_main(args.modules, args.registers, args.opcua_diagnostics))
    elif args.role == "clients":
        asyncio.run(clients_main(args.protocol, args.target, args.modules, args.registers, args.seconds))
    else:
        loop_factory = event_loop_factory(dial_in_site(1, ("voltage",), 1, 1, 1).modbus)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            print(runner.run(bridge_main(args)))


if __name__ == "__main__":
    main()
