"""The ``milur-bridge`` command line.

Each sub-command lives in its own module under ``bridge/commands/`` and defines ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered, so adding a
command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import bridge.commands


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(bridge.commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"bridge.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: str(m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every discovered sub-command."""
    parser = argparse.ArgumentParser(
        prog="milur-bridge",
        description="Poll Milur electricity meters and serve their values over OPC UA and Modbus TCP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {bridge.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
