"""CSV export of stored readings and archive records.

One file, one header line, then one row per reading or archive record, ordered by meter, then
readings before archive records, then time::

    record,meter,name,time,value,quality
    reading,m1,energy,2026-11-20T00:00:00+03:00,1234.56,Good
    profile,m1,A+,2026-11-20T00:00:00+03:00,0.42,0

``record`` is ``reading`` or an archive kind (``daily``, ``profile``, ``event``); ``name`` is the
tag name (readings) or the archive channel; ``time`` is ISO 8601 in the export time zone;
``quality`` is the quality name (readings) or the meter's status flags (archive records).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path

from bridge.storage.model import ArchiveKind, ReadingStore

HEADER = ("record", "meter", "name", "time", "value", "quality")


def split_key(key: str, meters: Sequence[str]) -> tuple[str, str]:
    """(meter, tag name) of a TagStore key, preferring the longest known meter name."""
    for meter in sorted(meters, key=len, reverse=True):
        if key.startswith(meter + "."):
            return meter, key[len(meter) + 1 :]
    meter, _, name = key.partition(".")
    return meter, name


def _text(value: object) -> str:
    return "" if value is None else str(value)


async def export_csv(
    store: ReadingStore,
    meters: Sequence[str],
    start: datetime,
    end: datetime,
    path: Path,
    zone: tzinfo,
    encoding: str = "windows-1251",
) -> int:
    """Write readings and archive records of ``meters`` in ``[start, end)``; returns the rows."""
    keys_by_meter: dict[str, list[str]] = {m: [] for m in meters}
    for key in await store.keys():
        meter, _ = split_key(key, meters)
        if meter in keys_by_meter:
            keys_by_meter[meter].append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding=encoding, errors="replace", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for meter in meters:
            for key in keys_by_meter[meter]:
                name = split_key(key, meters)[1]
                for r in await store.history(key, start, end):
                    when = r.source_time.astimezone(zone).isoformat()
                    writer.writerow(("reading", meter, name, when, _text(r.value), r.quality.name))
                    count += 1
            for kind in ArchiveKind:
                for a in await store.archive(meter, kind, start, end):
                    when = a.timestamp.astimezone(zone).isoformat()
                    writer.writerow((kind.value, meter, a.channel, when, _text(a.value), a.status))
                    count += 1
    return count
