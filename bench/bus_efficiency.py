"""Bus efficiency: how close one polled RS-485 line comes to its physical minimum.

N simulated meters (model 105) × R registers on one simulated line (``PtyLine``: wire time honoured
at 10 bits/byte, a configurable meter turnaround), polled by the bridge's ``Collector`` through a
real pseudo-terminal and pyserial. One cycle = one trigger of the poll group until every queued
poll has finished.

Physical minimum of a cycle = Σ over its transactions of (request wire time + meter turnaround
(at least the 3.5-character end-of-frame silence, §1) + reply wire time + the master's 3.5-character
inter-frame gap before the next request). The ratio measured / minimum is the bridge's overhead.

Scenario 2: ``--dead`` meters on the same line never answer. The healthy meters' cycle time is
compared with *their* physical minimum; the dead ones cost what the bridge spends probing them
(demoted meters are probed on one trigger in 2, 4 … 32).

Run: ``.venv/bin/python -m bench.bus_efficiency [--meters 32] [--registers 10] [--cycles 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from bench.measure import table, verdict
from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    PollGroup,
    SerialSettings,
    SiteMapping,
    TagConfig,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.polling.collector import Collector
from bridge.protocol.milur.frames import Address, read_request
from bridge.simulator import PtyLine, SimulatedBus, SimulatedMeter
from bridge.tags import TagStore

MODEL = "105"
REGISTERS = (
    "voltage",
    "current",
    "power_active",
    "energy_active_import_total",
    "energy_active_import_t1",
    "energy_active_import_t2",
    "frequency",
    "power_reactive",
    "power_apparent",
    "power_factor",
    "energy_active_import_t3",
    "energy_active_import_t4",
    "tariff_current",
    "battery_voltage",
)
VALUE_BYTES = {"u8": 1, "u16": 2, "s16": 2, "u24": 3, "s24": 3, "u32": 4, "s32": 4, "bcd32": 4}


@dataclass(frozen=True, slots=True)
class LineTimes:
    """Timing constants of the simulated line."""

    baudrate: int
    turnaround: float

    @property
    def char_time(self) -> float:
        return 10 / self.baudrate

    @property
    def gap(self) -> float:
        return 3.5 * self.char_time

    def transaction(self, request_bytes: int, reply_bytes: int) -> float:
        """Physical minimum of one request/reply plus the gap before the next request."""
        wire = (request_bytes + reply_bytes) * self.char_time
        return wire + max(self.turnaround, self.gap) + self.gap


def cycle_minimum(meters: list[int], registers: tuple[str, ...], line: LineTimes) -> float:
    """Physical minimum of one poll cycle over ``meters`` (1-byte addresses) reading ``registers``."""
    template = builtin_templates()[template_for_model(MODEL)]
    total = 0.0
    for address in meters:
        for name in registers:
            reg = template.registers[name]
            request = len(read_request(_address(address), reg.number).encode())
            reply = 1 + 5 + VALUE_BYTES[reg.fmt.value]  # W + 5 + LEN (§2)
            total += line.transaction(request, reply)
    return total


def _address(value: int) -> Address:
    return Address.for_meter(value, 1)


def site(device: str, meters: int, registers: tuple[str, ...], line: LineTimes) -> SiteMapping:
    channel = ChannelConfig(
        "rs485",
        ChannelKind.SERIAL,
        serial=SerialSettings(device, baudrate=line.baudrate),
        response_timeout=0.5,
        retries=1,
        frame_gap=0.0,  # the Link raises it to 3.5 character times (§1)
        reconnect_min=0.1,
        reconnect_max=1.0,
    )
    mets = [MeterConfig(f"m{a}", "rs485", MODEL, template_for_model(MODEL), a) for a in range(1, meters + 1)]
    group = PollGroup("all", tuple(m.name for m in mets), registers, interval=3600.0)
    return SiteMapping(
        source="<bench>",
        templates=builtin_templates(),
        listeners=(),
        channels=(channel,),
        meters=tuple(mets),
        poll_groups=(group,),
        tags=tuple(TagConfig(r, m.name, r) for m in mets for r in registers),
    )


async def run_cycles(collector: Collector, cycles: int) -> list[float]:
    """Trigger the poll group ``cycles`` times, one after the other; the duration of each."""
    group = collector.mapping.poll_groups[0]
    worker = collector.workers["rs485"]
    durations = []
    for _ in range(cycles):
        start = time.perf_counter()
        collector.trigger(group)
        while worker.queued():  # noqa: ASYNC110 (a measuring probe: the worker has no event)
            await asyncio.sleep(0.0005)
        durations.append(time.perf_counter() - start)
    return durations


async def scenario(
    meters: int, registers: tuple[str, ...], line: LineTimes, dead: int, cycles: int
) -> tuple[list[float], float, int, int, dict[str, int]]:
    """Run one scenario; (cycle durations, healthy minimum, bytes to meters, bytes from meters)."""
    sims = [SimulatedMeter(MODEL, a, seed=a) for a in range(1, meters + 1)]
    dead_meters = sims[len(sims) - dead :] if dead else []
    for sim in dead_meters:
        sim.faults.silent = True
    healthy = [s.address for s in sims if s not in dead_meters]
    async with PtyLine(SimulatedBus(sims), line.baudrate, turnaround=line.turnaround) as pty:
        collector = Collector(site(pty.device, meters, registers, line), TagStore())
        await collector.start()
        try:
            await run_cycles(collector, 1)  # warm-up: sessions opened, port settled
            rx0, tx0 = pty.bytes_received, pty.bytes_sent
            durations = await run_cycles(collector, cycles)
            rx, tx = pty.bytes_received - rx0, pty.bytes_sent - tx0
            states: dict[str, int] = {}
            for name in collector.pollers:
                state = collector.meter_state(name)
                states[state] = states.get(state, 0) + 1
        finally:
            await collector.stop()
    return durations, cycle_minimum(healthy, registers, line), rx, tx, states


async def bench(args: argparse.Namespace) -> str:
    line = LineTimes(args.baud, args.turnaround)
    registers = REGISTERS[: args.registers]
    out = [
        "## Bus efficiency (one RS-485 line, PtyLine)",
        "",
        f"{args.meters} meters × {len(registers)} registers, {line.baudrate} baud (10 bits/byte), "
        f"turnaround {line.turnaround * 1000:.0f} ms, gap 3.5 chars = {line.gap * 1000:.2f} ms, "
        f"response timeout 0.5 s, 1 retry; {args.cycles} measured cycles after one warm-up cycle.",
        "",
    ]
    rows = []
    durations, minimum, rx, tx, _ = await scenario(args.meters, registers, line, 0, args.cycles)
    mean = statistics.fmean(durations)
    wire_check = (rx + tx) / args.cycles * line.char_time
    rows.append(
        [
            "all healthy",
            f"{mean:.3f} s",
            f"{minimum:.3f} s",
            f"**{mean / minimum:.3f}×**",
            "≤ 1.10×",
            verdict(mean / minimum, 1.10),
        ]
    )
    if args.dead:
        d_durations, d_minimum, _, _, states = await scenario(
            args.meters, registers, line, args.dead, args.dead_cycles
        )
        settled = d_durations[args.settle :] or d_durations
        d_mean = statistics.fmean(settled)
        rows.append(
            [
                f"{args.dead} dead, healthy meters' cycle (cycles {args.settle + 2}–{args.dead_cycles + 1})",
                f"{d_mean:.3f} s",
                f"{d_minimum:.3f} s",
                f"**{d_mean / d_minimum:.3f}×**",
                "≤ 1.25×",
                verdict(d_mean / d_minimum, 1.25),
            ]
        )
        rows.append(
            [
                f"{args.dead} dead, worst cycle",
                f"{max(d_durations):.3f} s",
                f"{d_minimum:.3f} s",
                f"{max(d_durations) / d_minimum:.3f}×",
                "",
                "",
            ]
        )
    out.append(table(["scenario", "measured cycle", "physical minimum", "ratio", "target", ""], rows))
    out.append("")
    out.append(
        f"Wire check (healthy run): {(rx + tx) / args.cycles:.0f} bytes per cycle on the line = "
        f"{wire_check:.3f} s of pure wire time per cycle."
    )
    if args.dead:
        out.append(
            "Cycle times with dead meters (warm-up excluded): "
            + ", ".join(f"{d:.2f}" for d in d_durations)
            + f" s; meter states at the end: {states}."
        )
    return "\n".join(out) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=32)
    p.add_argument("--registers", type=int, default=10, choices=range(1, len(REGISTERS) + 1))
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--turnaround", type=float, default=0.020, help="meter turnaround, seconds")
    p.add_argument("--cycles", type=int, default=3, help="measured cycles, all healthy")
    p.add_argument("--dead", type=int, default=3, help="dead meters in the second scenario (0: skip)")
    p.add_argument("--dead-cycles", type=int, default=8, help="measured cycles with dead meters")
    p.add_argument("--settle", type=int, default=3, help="dead-meter cycles left out of the mean")
    return p


def main(argv: list[str] | None = None) -> None:
    print(asyncio.run(bench(parser().parse_args(argv))))


if __name__ == "__main__":
    main()
