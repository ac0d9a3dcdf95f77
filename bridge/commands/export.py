"""``milur-bridge export``: stored readings as CSV, or half-hour energy as 80020 XML files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.config.errors import MappingError
from bridge.config.model import SiteMapping
from bridge.storage.export_80020 import export_80020
from bridge.storage.export_csv import export_csv
from bridge.storage.intervals import day_bounds
from bridge.storage.model import StorageError
from bridge.storage.sqlite import SqliteReadingStore

NAME = "export"
HELP = "export stored readings (CSV) or half-hour energy (80020 XML)"
DESCRIPTION = """\
Export what the bridge stored (docs/storage.md).

  csv    one file readings_<from>_<to>.csv: every stored reading and archive record
  80020  one file per day, 80020_<sender INN>_<YYYYMMDD>_<number>.xml, with 48 half-hour
         values of A+, A-, R+, R- per meter (measuring points from the mapping's <export>)

Days are calendar days in the export time zone (<export timezone>, default Europe/Moscow);
--to is inclusive.
"""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the export command."""
    parser.add_argument("mapping", type=Path, help="site mapping file (XML)")
    parser.add_argument("--from", dest="first", type=_date, required=True, metavar="DATE", help="first day")
    parser.add_argument(
        "--to", dest="last", type=_date, required=True, metavar="DATE", help="last day, inclusive"
    )
    parser.add_argument(
        "--meter",
        action="append",
        default=[],
        metavar="M",
        help="export this meter only (repeatable; default every meter)",
    )
    parser.add_argument("--format", choices=("csv", "80020"), default="csv", help="default csv")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder")
    parser.add_argument(
        "--encoding",
        choices=("windows-1251", "utf-8"),
        default="windows-1251",
        help="file encoding (default windows-1251)",
    )
    parser.add_argument(
        "--db", type=Path, default=None, metavar="PATH", help="database (default <storage path>)"
    )
    parser.add_argument(
        "--number",
        type=int,
        default=None,
        metavar="N",
        help="80020: number of the first message (default: the store's persistent counter)",
    )


def _fail(message: str) -> int:
    print(f"milur-bridge export: {message}", file=sys.stderr)
    return 2


def _load_mapping(path: Path) -> SiteMapping | None:
    # imported here: a broken loader must not break every other command
    from bridge.config.loader import load_mapping

    try:
        return load_mapping(path)
    except MappingError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """Run the export; 0 on success, 1 on a storage failure, 2 on bad input."""
    if args.last < args.first:
        return _fail(f"--to {args.last} is before --from {args.first}")
    if not args.mapping.is_file():
        return _fail(f"no mapping file {args.mapping}")
    mapping = _load_mapping(args.mapping)
    if mapping is None:
        return 2
    known = [m.name for m in mapping.meters]
    unknown = [m for m in args.meter if m not in known]
    if unknown:
        return _fail(f"unknown meter {', '.join(unknown)} (the mapping has: {', '.join(known)})")
    try:
        zone = ZoneInfo(mapping.export.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(f"unknown time zone {mapping.export.timezone!r} in <export>")
    db = args.db or Path(mapping.storage.path)
    if not db.is_file():
        return _fail(f"no reading store at {db} (set <storage path> or --db)")
    meters = list(dict.fromkeys(args.meter)) or known
    try:
        written = asyncio.run(_export(args, mapping, db, meters, zone))
    except (StorageError, OSError) as exc:
        print(f"milur-bridge export: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


async def _export(
    args: argparse.Namespace, mapping: SiteMapping, db: Path, meters: list[str], zone: ZoneInfo
) -> list[Path]:
    store = SqliteReadingStore(db, mapping.storage)
    await store.open()
    try:
        if args.format == "80020":
            count = (args.last - args.first).days + 1
            days = [args.first + timedelta(days=i) for i in range(count)]
            return await export_80020(store, mapping, days, meters, args.out, args.encoding, args.number)
        start, _ = day_bounds(args.first, zone)
        _, end = day_bounds(args.last, zone)
        path = args.out / f"readings_{args.first:%Y%m%d}_{args.last:%Y%m%d}.csv"
        await export_csv(store, meters, start, end, path, zone, args.encoding)
        return [path]
    finally:
        await store.close()
