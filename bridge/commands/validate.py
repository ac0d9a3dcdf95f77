"""``milur-bridge validate MAPPING``: check a mapping file without starting anything.

Exit 0 and a short summary (channels by kind, meters, tags, poll groups, listeners) when the
mapping is good; exit 1 and every problem as ``file:line: message`` when it is not.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from bridge.config.model import SiteMapping

NAME = "validate"
HELP = "check a mapping file and print a summary or every error"
DESCRIPTION = (
    "Check a mapping file: XML syntax, the schema (bridge/config/mapping.xsd) and the\n"
    "cross-checks (names, references, registers, addresses, Modbus placement).\n"
    "Prints a summary and exits 0 when the mapping is good; prints every problem as\n"
    "file:line: message and exits 1 when it is not. Nothing is started."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``MAPPING`` path."""
    parser.add_argument("mapping", metavar="MAPPING", type=Path, help="the mapping file (XML)")


def summary(mapping: SiteMapping) -> list[str]:
    """Lines describing a good mapping."""
    kinds = Counter(c.kind.value for c in mapping.channels)
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    models = Counter(m.model for m in mapping.meters)
    by_model = ", ".join(f"{n} × {k}" for k, n in sorted(models.items()))
    return [
        f"{mapping.source}: OK",
        f"  channels     {len(mapping.channels)} ({by_kind})",
        f"  meters       {len(mapping.meters)}" + (f" ({by_model})" if by_model else ""),
        f"  tags         {len(mapping.tags)}",
        f"  poll groups  {len(mapping.poll_groups)}",
        f"  listeners    {len(mapping.listeners)}",
    ]


def run(args: argparse.Namespace) -> int:
    """0 when the mapping is good, 1 when it has errors."""
    from bridge.config.loader import MappingError, load_mapping

    try:
        mapping = load_mapping(args.mapping)
    except MappingError as exc:
        for error in exc.errors:
            print(error)
        count = len(exc.errors)
        print(f"{args.mapping}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print("\n".join(summary(mapping)))
    return 0
