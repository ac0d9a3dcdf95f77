"""The 80020 XML export (ATS "maket 80020", version 2) of half-hour energy values.

One file per day: ``<message class="80020" version="2" number="N">`` with ``<datetime>``,
``<sender>``, ``<area>`` and one ``<measuringpoint>`` per meter holding its measuring channels
01 A+, 02 A−, 03 R+, 04 R−, each with 48 half-hour ``<period>`` elements. Values are integers:
energy × ``ExportSettings.value_multiplier``, rounded with the remainder carried to the next
half-hour so the day's sum is kept. A half-hour whose energy is not known is written as
``<value status="1">0</value>``: status 1 marks it as not commercial (not measured); the 0 is a
placeholder, not a reading. Measured values have status 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from bridge.config.model import ExportSettings, MeasuringPoint, SiteMapping
from bridge.storage.intervals import (
    HALF_HOUR,
    EnergySample,
    day_bounds,
    half_hour_starts,
    half_hour_values,
)
from bridge.storage.model import ArchiveKind, ReadingStore

log = logging.getLogger(__name__)

MEASURED_STATUS = "0"
MISSING_STATUS = "1"


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One 80020 measuring channel and where its energy comes from."""

    code: str  # "01".."04"
    profile_channel: str  # ArchiveRecord.channel of profile records
    register: str  # energy total register (protocol notes §6)
    desc: str


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("01", "A+", "energy_active_import_total", "активная энергия, прием"),
    ChannelSpec("02", "A-", "energy_active_export_total", "активная энергия, отдача"),
    ChannelSpec("03", "R+", "energy_reactive_import_total", "реактивная энергия, прием"),
    ChannelSpec("04", "R-", "energy_reactive_export_total", "реактивная энергия, отдача"),
)


@dataclass(frozen=True, slots=True)
class ChannelDay:
    """48 half-hour energies of one channel (None = not known)."""

    code: str
    desc: str
    values: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class PointDay:
    """One measuring point's channels for a day."""

    code: str
    name: str
    channels: Sequence[ChannelDay]


def integer_values(values: Sequence[float | None], multiplier: float) -> list[int | None]:
    """Scale and round to integers, carrying each remainder into the next known value."""
    out: list[int | None] = []
    carry = 0.0
    for value in values:
        if value is None:
            out.append(None)
            continue
        exact = value * multiplier + carry
        rounded = round(exact)
        carry = exact - rounded
        out.append(rounded)
    return out


def file_name(settings: ExportSettings, day: date, number: int) -> str:
    """``80020_<sender INN>_<YYYYMMDD>_<number>.xml``."""
    return f"80020_{settings.sender_inn or '0'}_{day:%Y%m%d}_{number}.xml"


def render_80020(
    day: date,
    number: int,
    settings: ExportSettings,
    points: Sequence[PointDay],
    created: datetime,
    encoding: str = "windows-1251",
) -> bytes:
    """The XML document of one day, encoded (lxml writes the declaration)."""
    zone = ZoneInfo(settings.timezone)
    local = created.astimezone(zone)
    root = etree.Element("message", {"class": "80020", "version": "2", "number": str(number)})
    when = etree.SubElement(root, "datetime")
    etree.SubElement(when, "timestamp").text = f"{local:%Y%m%d%H%M%S}"
    dst = local.dst()
    etree.SubElement(when, "daylightsavingtime").text = "1" if dst else "0"
    etree.SubElement(when, "day").text = f"{day:%Y%m%d}"
    sender = etree.SubElement(root, "sender")
    etree.SubElement(sender, "inn").text = settings.sender_inn
    etree.SubElement(sender, "name").text = settings.sender_name
    area = etree.SubElement(root, "area")
    etree.SubElement(area, "inn").text = settings.area_inn
    etree.SubElement(area, "name").text = settings.area_name
    starts = half_hour_starts(day, zone)
    for point in points:
        mp = etree.SubElement(area, "measuringpoint", {"code": point.code, "name": point.name})
        for channel in point.channels:
            ch = etree.SubElement(mp, "measuringchannel", {"code": channel.code, "desc": channel.desc})
            ints = integer_values(channel.values, settings.value_multiplier)
            for start, value in zip(starts, ints, strict=True):
                end = (start + HALF_HOUR).astimezone(zone)
                period = etree.SubElement(ch, "period", {"start": f"{start:%H%M}", "end": f"{end:%H%M}"})
                status = MISSING_STATUS if value is None else MEASURED_STATUS
                etree.SubElement(period, "value", {"status": status}).text = str(value or 0)
    data = etree.tostring(root, encoding=encoding, xml_declaration=True, pretty_print=True)
    assert isinstance(data, bytes)
    return data


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def measuring_point(mapping: SiteMapping, meter: str) -> MeasuringPoint:
    """The point a meter is exported as (default: its name as the code, its description)."""
    point = mapping.export.points.get(meter)
    if point is not None:
        return point
    config = mapping.meter(meter)
    return MeasuringPoint(code=meter, name=config.description or meter)


async def collect_day(
    store: ReadingStore, mapping: SiteMapping, day: date, meters: Sequence[str]
) -> list[PointDay]:
    """Half-hour values of ``day`` for each meter that has any of the four channels."""
    settings = mapping.export
    zone = ZoneInfo(settings.timezone)
    start, end = day_bounds(day, zone)
    starts = half_hour_starts(day, zone)
    tolerance = timedelta(seconds=settings.boundary_tolerance)
    points: list[PointDay] = []
    for meter in meters:
        profile_records = await store.archive(meter, ArchiveKind.PROFILE, start, end)
        channels: list[ChannelDay] = []
        for spec in CHANNELS:
            profile = {
                r.timestamp: float(r.value)
                for r in profile_records
                if r.channel == spec.profile_channel and isinstance(r.value, int | float)
            }
            tag = next((t for t in mapping.tags if t.meter == meter and t.register == spec.register), None)
            if tag is None and not profile:
                continue
            samples: list[EnergySample] = []
            if tag is not None:
                readings = await store.history(tag.key, start - tolerance, end + tolerance)
                samples = [
                    EnergySample(r.source_time, float(r.value))
                    for r in readings
                    if isinstance(r.value, int | float) and not isinstance(r.value, bool)
                ]
            values = half_hour_values(starts, samples, profile, tolerance)
            channels.append(ChannelDay(spec.code, spec.desc, values))
        if channels:
            point = measuring_point(mapping, meter)
            points.append(PointDay(point.code, point.name, channels))
        else:
            log.warning("meter %s has no A+/A-/R+/R- energy tag or profile: not in 80020", meter)
    return points


async def export_80020(
    store: ReadingStore,
    mapping: SiteMapping,
    days: Sequence[date],
    meters: Sequence[str],
    out_dir: Path,
    encoding: str = "windows-1251",
    first_number: int | None = None,
    created: datetime | None = None,
) -> list[Path]:
    """Write one 80020 file per day into ``out_dir``; returns the paths written.

    Message numbers count up from ``first_number``, or come from the store's persistent
    ``"80020"`` counter when it is None.
    """
    written: list[Path] = []
    for i, day in enumerate(days):
        points = await collect_day(store, mapping, day, meters)
        if first_number is None:
            number = await store.next_sequence("80020")
        else:
            number = first_number + i
        moment = created or datetime.now(ZoneInfo(mapping.export.timezone))
        data = render_80020(day, number, mapping.export, points, moment, encoding)
        path = out_dir / file_name(mapping.export, day, number)
        write_file(path, data)
        written.append(path)
    return written
