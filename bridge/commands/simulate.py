"""``milur-bridge simulate``: run simulated Milur meters until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from bridge.logsetup import configure_logging
from bridge.simulator.pty import PtyLine
from bridge.simulator.spec import (
    FormSpec,
    RunningSimulator,
    SimulatorSpec,
    SpecError,
    load_spec,
    parse_host_port,
    parse_meter,
)

NAME = "simulate"
HELP = "run simulated Milur meters on a pseudo-terminal or TCP (for tests, demos, training)"
DESCRIPTION = """\
Run simulated Milur meters (104/105/107 single-phase, 305/307 three-phase) until Ctrl-C.
All meters share one bus (like meters behind a gateway meter); every serving form serves it:

  --pty                serial line on a pseudo-terminal; its path is printed (open it with
                       pyserial or `milur-bridge read --channel PATH`). Wire time is honoured:
                       9600 baud is as slow as a real line. --link PATH gives a stable symlink.
  --tcp HOST:PORT      TCP server: a GSM module in server mode or an RS-485/Ethernet converter
                       (the bridge connects to it). Port 0 picks a free port (printed).
  --dial HOST:PORT     GSM module in client mode: dials the bridge's listener, stays silent,
  --imei N             answers the C3 identification with its 15-digit IMEI, then serves frames.
"""
EPILOG = """\
meters (--meter, repeatable):  MODEL:ADDRESS[,key=value...]
  --meter 307:255 --meter 107:49932,password=010203040506,serial=012049932
  options: serial, password (12 hex), levels (0/1), width (1|4), energy-scale (0.01|0.001),
  clock (binary|bcd), quirk (on|off: Milur 104 wake-byte quirk), firmware, model-text,
  session-timeout (s), locked-error (09|0D), seed

spec file (--file): one item a line, '#' comments; same meter syntax with spaces between options:
  meter 307:255 firmware=123 energy-scale=0.001
  meter 104:12
  pty baud=9600 link=/tmp/milur0 turnaround=0.02
  tcp 127.0.0.1:7000 [imei=N]
  dial 127.0.0.1:7001 imei=356938035643809 [keepalive=30] [wrap=on] [reconnect=on]

Factory password FFFFFFFFFFFF; three wrong passwords lock a meter for 30 minutes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``simulate``."""
    parser.epilog = EPILOG
    parser.add_argument("--meter", action="append", default=[], metavar="MODEL:ADDRESS[,k=v]")
    parser.add_argument("--file", metavar="SPEC", help="spec file with meters and serving forms")
    parser.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal")
    parser.add_argument("--baudrate", type=int, default=9600, help="pty baud rate (9600)")
    parser.add_argument("--turnaround", type=float, default=0.02, help="meter turnaround, s")
    parser.add_argument("--link", metavar="PATH", help="stable symlink to the pty")
    parser.add_argument("--tcp", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--dial", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--imei", help="IMEI of the dialling module (15 digits)")
    parser.add_argument("--keepalive", type=float, help="dial-out keep-alive period, s")


def build_spec(args: argparse.Namespace) -> SimulatorSpec:
    """The spec from the command line (and ``--file``); raises ``SpecError``."""
    base = load_spec(args.file) if args.file else SimulatorSpec((), ())
    meters = list(base.meters) + [parse_meter(text) for text in args.meter]
    forms = list(base.forms)
    if args.pty:
        forms.append(FormSpec("pty", baudrate=args.baudrate, turnaround=args.turnaround, link=args.link))
    for text in args.tcp:
        host, port = parse_host_port(text)
        forms.append(FormSpec("tcp", host=host, port=port))
    if args.dial and not args.imei:
        raise SpecError("--dial needs --imei")
    if args.imei and (len(args.imei) != 15 or not args.imei.isdigit()):
        raise SpecError(f"an IMEI is 15 digits, got {args.imei!r}")
    for text in args.dial:
        host, port = parse_host_port(text)
        forms.append(FormSpec("dial", host, port, imei=args.imei, keepalive=args.keepalive))
    if not meters:
        raise SpecError("no meters: give --meter MODEL:ADDRESS or --file")
    if not forms:
        raise SpecError("nothing to serve on: give --pty, --tcp HOST:PORT or --dial HOST:PORT")
    return SimulatorSpec(tuple(meters), tuple(forms))


def describe(sim: RunningSimulator) -> list[str]:
    """One line per meter and per serving form."""
    from bridge.simulator.serving import DialOutModem, TcpMeterServer

    lines = [
        f"meter {m.model} address {m.address} ({m.address_width}-byte) serial {m.serial_number}"
        for m in sim.bus.meters
    ]
    for form in sim.forms:
        if isinstance(form, PtyLine):
            lines.append(f"serial line {form.device} at {form.baudrate} baud")
        elif isinstance(form, TcpMeterServer):
            lines.append(f"tcp server {form.host}:{form.port}")
        elif isinstance(form, DialOutModem):
            lines.append(f"dialling {form.host}:{form.port} as IMEI {form.imei}")
    return lines


async def _serve(spec: SimulatorSpec) -> None:
    sim = RunningSimulator(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        for line in describe(sim):
            print(line, flush=True)
        print("running; Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    """Run ``simulate`` until Ctrl-C or SIGTERM."""
    try:
        spec = build_spec(args)
    except (SpecError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging("INFO")
    try:
        asyncio.run(_serve(spec))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
