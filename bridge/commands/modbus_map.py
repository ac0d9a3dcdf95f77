"""``milur-bridge modbus-map``: print the complete Modbus register map of a site mapping."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from bridge.config.errors import MappingError
from bridge.config.modbus_map import (
    INTEGER_TYPES,
    STATUS_FIELDS,
    ModbusMap,
    resolve_modbus_map,
)
from bridge.config.model import ModbusTable, ModbusType, SiteMapping
from bridge.tags.keys import METER_STATES
from bridge.tags.model import Quality

NAME = "modbus-map"
HELP = "print the Modbus register map of a mapping (markdown or CSV)"
DESCRIPTION = """\
Print every register the Modbus TCP server serves for MAPPING: unit id, table, address, data
type, word order, scale, tag, meter, unit and description, plus each meter's status registers
and, for meters whose daily archive is read, the daily snapshot registers (docs/modbus.md).
Addresses are 0-based protocol addresses: holding register 100 is 40101 in 1-based "4xxxx"
notation (mbpoll -r 101).
"""

COLUMNS = (
    "unit_id", "table", "address", "type", "word_order", "scale", "tag", "meter", "unit",
    "description",
)
Row = tuple[str, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the modbus-map command."""
    parser.add_argument("mapping", type=Path, help="site mapping file (XML)")
    parser.add_argument(
        "--format", choices=("markdown", "csv"), default="markdown", help="default markdown"
    )


def map_rows(mapping: SiteMapping, resolved: ModbusMap) -> list[Row]:
    """One row per served value and per status register, by unit id, table and address."""
    keyed: list[tuple[tuple[int, str, int], Row]] = []
    meters = {m.name: m for m in mapping.meters}
    for p in resolved.placements:
        meter = meters[p.tag.meter]
        register = mapping.register_of(meter, p.tag.register)
        row = (
            str(p.unit_id),
            p.table.value,
            str(p.address),
            p.data_type.value,
            p.word_order.value if p.words > 1 else "",
            f"{p.scale:g}" if p.data_type in INTEGER_TYPES else "",
            p.key,
            p.tag.meter,
            p.unit,
            p.tag.description or register.description,
        )
        keyed.append(((p.unit_id, p.table.value, p.address), row))
    for block in resolved.status_blocks:
        for table in ModbusTable:
            for offset, status in enumerate(STATUS_FIELDS):
                address = block.address + offset
                unit = "s" if status.name.startswith("age") else ""
                row = (
                    str(block.unit_id),
                    table.value,
                    str(address),
                    ModbusType.UINT16.value,
                    "",
                    "",
                    f"{block.meter}.status.{status.name}",
                    block.meter,
                    unit,
                    status.description,
                )
                keyed.append(((block.unit_id, table.value, address), row))
    for snap in resolved.snapshot_blocks:  # docs/modbus.md "Daily snapshot registers"
        for table in ModbusTable:
            for f in snap.fields:
                address = snap.address + f.offset
                row = (
                    str(snap.unit_id), table.value, str(address), f.data_type.value,
                    snap.word_order.value if f.words > 1 else "", "",
                    f"{snap.meter}.daily.{f.name}", snap.meter, f.unit, f.description,
                )
                keyed.append(((snap.unit_id, table.value, address), row))
    keyed.sort(key=lambda item: item[0])
    return [row for _, row in keyed]


def render_csv(rows: list[Row]) -> str:
    """The map as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(mapping: SiteMapping, resolved: ModbusMap, rows: list[Row]) -> str:
    """The map as a Markdown document: a short header, the table, the legend of status codes."""
    s = resolved.settings
    lines = [
        f"# Modbus map of {mapping.source}",
        "",
        f"Server {s.host}:{s.port}, layout {s.layout}, read-only. Addresses are 0-based "
        "(holding register 100 = 40101). Status registers of each meter start at "
        f"{s.status_address} of its unit id, in both tables.",
        "",
        "| " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    qualities = ", ".join(f"{q.modbus_code} {q.name}" for q in Quality)
    states = ", ".join(f"{i} {name}" for i, name in enumerate(METER_STATES))
    lines += ["", f"Quality codes: {qualities}.", f"Meter states: {states}."]
    if resolved.skipped:
        skipped = ", ".join(t.key for t in resolved.skipped)
        lines += [f"Not served on Modbus (text and date registers): {skipped}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the map; 0 on success, 2 when the mapping cannot be loaded."""
    # imported here: a broken loader must not break every other command
    from bridge.config.loader import load_mapping

    try:
        mapping = load_mapping(args.mapping)
        resolved = resolve_modbus_map(mapping)
    except MappingError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2
    rows = map_rows(mapping, resolved)
    if args.format == "csv":
        sys.stdout.write(render_csv(rows))
    else:
        sys.stdout.write(render_markdown(mapping, resolved, rows))
    return 0
