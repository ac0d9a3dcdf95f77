"""``milur-bridge run [MAPPING]``: run a site, or the built-in demo without a mapping."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib import resources
from pathlib import Path

from bridge.config.loader import MappingError, load_mapping
from bridge.config.model import SiteMapping
from bridge.logsetup import configure_logging

NAME = "run"
HELP = "run the bridge for a mapping (without one: the built-in demo with simulated meters)"
DESCRIPTION = """\
Run the bridge. Without MAPPING it runs the built-in demo (mappings/demo.xml): simulated meters on a
simulated RS-485 line, behind a gateway meter and on a dial-in GSM module; OPC UA on
opc.tcp://127.0.0.1:4840/milur-bridge, Modbus TCP on 127.0.0.1:5020, status page on
http://127.0.0.1:8080/.

Signals: SIGTERM / Ctrl-C stop cleanly; SIGHUP reloads the mapping (a bad one is refused and the
running mapping stays).
"""

log = logging.getLogger("bridge.run")


def demo_mapping_path() -> Path:
    """The built-in demo mapping shipped inside the package."""
    return Path(str(resources.files("bridge.demo").joinpath("demo.xml")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``run``."""
    parser.add_argument("mapping", nargs="?", type=Path, help="site mapping file (default: the demo)")
    parser.add_argument("--check", action="store_true", help="validate the mapping and exit")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument(
        "--listen-all", action="store_true",
        help="bind the OPC UA, Modbus and status servers to all interfaces (for containers)",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio event loop")


def _banner(mapping: SiteMapping, demo: bool) -> str:
    lines = [f"milur-bridge is running {'the demo' if demo else mapping.source}"]
    if mapping.opcua.enabled:
        lines.append(f"  OPC UA   {mapping.opcua.endpoint}")
    if mapping.modbus.enabled:
        lines.append(f"  Modbus   {mapping.modbus.host}:{mapping.modbus.port}")
    if mapping.status.enabled:
        lines.append(f"  Status   http://{mapping.status.host}:{mapping.status.port}/")
    if demo:
        lines += [
            "Try this:",
            "  browse OPC UA:  .venv/bin/python -m asyncua.tools.uals -u "
            f"{mapping.opcua.endpoint.replace('0.0.0.0', '127.0.0.1')} -l 3  (or UaExpert)",
            f"  read Modbus:    mbpoll -m tcp -p {mapping.modbus.port} -a 1 -0 -r 102 -c 1 -t 4:float -B "
            "-1 127.0.0.1   (voltage_a of the first meter)",
            "  (unit id 1 = first meter; `milur-bridge modbus-map` prints the whole map)",
            "Stop with Ctrl-C.",
        ]
    return "\n".join(lines)


async def _serve(mapping: SiteMapping, path: Path, demo: bool, listen_all: bool) -> int:
    from bridge.app import BridgeApp, listen_everywhere

    transform = listen_everywhere if listen_all else None
    app = BridgeApp(transform(mapping) if transform else mapping, mapping_path=path, transform=transform)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(app.reload()))
    try:
        await app.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await app.stop()
        return 1
    print(_banner(app.mapping, demo), file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await app.stop()
        log.info("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    """Validate, then serve until a signal stops the bridge."""
    configure_logging(args.log_level, args.log_format)
    demo = args.mapping is None
    path: Path = demo_mapping_path() if demo else args.mapping
    try:
        mapping = load_mapping(path)
    except MappingError as exc:
        print(str(exc), file=sys.stderr)
        print(f"{path}: the mapping has errors; nothing was started", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.check:
        print(f"{path}: OK", file=sys.stderr)
        return 0
    from bridge.publishers.modbus import event_loop_factory

    loop_factory = None if args.no_uvloop else event_loop_factory(mapping.modbus)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(mapping, path, demo, args.listen_all))
