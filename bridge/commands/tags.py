"""``milur-bridge tags MAPPING``: every tag with its meter, register, OPC UA node and Modbus place.

The OPC UA NodeId and data type come from the OPC UA publisher's own address-space builder and the
Modbus placement from the resolver the Modbus server uses (``resolve_modbus_map``), so this list is
what the servers will serve, not a second guess at it.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bridge.config.errors import MappingError
from bridge.config.model import SiteMapping

if TYPE_CHECKING:
    from asyncua.server.server import Server

NAME = "tags"
HELP = "list every tag: meter, register, unit, OPC UA NodeId, Modbus unit/table/address/type"
DESCRIPTION = """\
List every tag of MAPPING with where a client finds it:

  meter, tag, register (name and number), unit,
  OPC UA NodeId and data type (ns=2 is the bridge's namespace, OpcUaSettings.namespace_uri;
  a client should look the index up by the URI),
  Modbus unit id, table, 0-based address, data type and word order.

Text and date/time tags are not served on Modbus (shown as "-"); `milur-bridge modbus-map`
prints the whole Modbus map including the per-meter status registers.
"""

COLUMNS = (
    "meter", "tag", "register", "number", "unit", "opcua_node_id", "opcua_type",
    "modbus_unit", "modbus_table", "modbus_address", "modbus_type", "word_order",
)  # fmt: skip
#: namespace index of the bridge's namespace in a running server: asyncua has 0 (OPC UA) and 1
#: (the server's application URI); the publisher registers ours next
NAMESPACE_INDEX = 2
_NOT_SERVED = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``MAPPING`` and ``--format``."""
    parser.add_argument("mapping", metavar="MAPPING", type=Path, help="site mapping file (XML)")
    parser.add_argument("--format", choices=("text", "csv"), default="text", help="default text")


def tag_rows(mapping: SiteMapping) -> list[tuple[str, ...]]:
    """One row (``COLUMNS``) per tag, in mapping order."""
    from bridge.config.modbus_map import resolve_modbus_map
    from bridge.publishers.opcua_space import AddressSpaceBuilder, _tag_variant

    # The builder derives NodeIds without a server (it only needs the namespace index); its
    # _tag_node_id is the one function both the publisher and this listing go through.
    builder = AddressSpaceBuilder(cast("Server", None), NAMESPACE_INDEX)
    placements = {p.key: p for p in resolve_modbus_map(mapping).placements}
    rows: list[tuple[str, ...]] = []
    for tag in mapping.tags:
        meter = mapping.meter(tag.meter)
        reg = mapping.register_of(meter, tag.register)
        unit = tag.unit if tag.unit is not None else reg.unit
        node_id = builder._tag_node_id(tag).to_string()
        opcua_type = _tag_variant(mapping, meter, tag, reg, unit).name
        p = placements.get(tag.key)
        modbus = (
            (str(p.unit_id), p.table.value, str(p.address), p.data_type.value,
             p.word_order.value if p.words > 1 else "")
            if p is not None
            else (_NOT_SERVED,) * 4 + ("",)
        )  # fmt: skip
        rows.append((tag.meter, tag.name, reg.name, str(reg.number), unit, node_id, opcua_type, *modbus))
    return rows


def render_text(rows: list[tuple[str, ...]]) -> str:
    """Aligned columns with a header line."""
    table = [tuple(c.upper() for c in COLUMNS), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in table
    )


def render_csv(rows: list[tuple[str, ...]]) -> str:
    """CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    """0 and the list; 1 and every error when the mapping is bad."""
    from bridge.config.loader import load_mapping

    try:
        mapping = load_mapping(args.mapping)
    except MappingError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{args.mapping}: the mapping has errors", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.mapping}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    rows = tag_rows(mapping)
    sys.stdout.write(render_csv(rows) if args.format == "csv" else render_text(rows))
    return 0
