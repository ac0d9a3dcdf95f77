"""Export formats: half-hour values, 80020 XML (lxml-parsed back), CSV."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from bridge.config.model import SiteMapping
from bridge.storage import ArchiveKind, ArchiveRecord, Reading, SqliteReadingStore, TagClass
from bridge.storage.export_80020 import collect_day, export_80020, integer_values, render_80020
from bridge.storage.export_csv import HEADER, export_csv
from bridge.storage.intervals import EnergySample, energy_at, half_hour_starts, half_hour_values
from bridge.tags import Quality

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

MSK = ZoneInfo("Europe/Moscow")
DAY = date(2026, 11, 20)
MIDNIGHT = datetime(2026, 11, 20, tzinfo=MSK)
CREATED = datetime(2026, 11, 21, 3, 4, 5, tzinfo=MSK)
HALF_KWH_PER_HALF_HOUR = 0.5


def _energy_readings() -> list[Reading]:
    """m1.ap every 10 min (7 s past), 1 kWh/h, with no reading from 10:05 to 12:00 local."""
    rows = []
    t = MIDNIGHT - timedelta(minutes=30) + timedelta(seconds=7)
    while t < MIDNIGHT + timedelta(days=1, minutes=30):
        local = t.astimezone(MSK)
        in_gap = local.date() == DAY and (10, 5) <= (local.hour, local.minute) < (12, 0)
        if not in_gap:
            hours = (t - MIDNIGHT).total_seconds() / 3600
            rows.append(Reading("m1.ap", 1000.0 + hours, Quality.Good, t.astimezone(UTC)))
        t += timedelta(minutes=10)
    return rows


@pytest.fixture
async def filled(store: SqliteReadingStore) -> SqliteReadingStore:
    store.submit(_energy_readings(), TagClass.ENERGY)
    starts = half_hour_starts(DAY, MSK)
    store.submit_archive(
        [ArchiveRecord("m1", ArchiveKind.PROFILE, "A-", starts[i], 0.1 * (i + 1)) for i in range(3)]
        + [ArchiveRecord("m1", ArchiveKind.PROFILE, "A+", starts[5], 0.7)]
        + [ArchiveRecord("m1", ArchiveKind.DAILY, "A+", MIDNIGHT, 1000.0)]
    )
    await store.flush()
    return store


# -- half-hour arithmetic ---------------------------------------------------------------------
def test_energy_at_boundary_exact_interpolated_or_unknown() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    samples = [EnergySample(t0, 10.0), EnergySample(t0 + timedelta(minutes=10), 11.0)]
    tol = timedelta(minutes=15)
    assert energy_at(t0, samples, tol) == 10.0
    assert energy_at(t0 + timedelta(minutes=5), samples, tol) == pytest.approx(10.5)
    assert energy_at(t0 - timedelta(seconds=1), samples, tol) is None  # nothing before
    assert energy_at(t0 + timedelta(minutes=11), samples, tol) is None  # nothing after
    far = [EnergySample(t0, 10.0), EnergySample(t0 + timedelta(hours=1), 12.0)]
    assert energy_at(t0 + timedelta(minutes=30), far, tol) is None  # a gap is not bridged


def test_half_hour_values_prefer_profile_and_refuse_negative() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [t0 + i * timedelta(minutes=30) for i in range(3)]
    samples = [EnergySample(t0, 5.0), EnergySample(starts[1], 6.0), EnergySample(starts[2], 1.0)]
    samples.append(EnergySample(starts[2] + timedelta(minutes=30), 1.25))
    values = half_hour_values(starts, samples, {starts[0]: 0.9}, timedelta(minutes=1))
    assert values == [0.9, None, 0.25]  # profile wins; a counter going back is unknown


def test_integer_values_carry_the_remainder() -> None:
    assert integer_values([0.4, 0.4, None, 0.4, 0.4], 1.0) == [0, 1, None, 0, 1]
    assert sum(v or 0 for v in integer_values([0.333] * 9, 1000.0)) == 2997


# -- 80020 ------------------------------------------------------------------------------------
async def test_80020_document(filled: SqliteReadingStore, mapping: SiteMapping) -> None:
    points = await collect_day(filled, mapping, DAY, ["m1", "m2"])
    data = render_80020(DAY, 17, _wh(mapping).export, points, CREATED)
    assert data.startswith(b"<?xml version='1.0' encoding='windows-1251'?>")
    assert "ТП-1, ввод 1".encode("cp1251") in data
    root = etree.fromstring(data)
    assert (root.tag, root.get("class"), root.get("version"), root.get("number")) == (
        "message",
        "80020",
        "2",
        "17",
    )
    assert root.findtext("datetime/timestamp") == "20261121030405"
    assert root.findtext("datetime/daylightsavingtime") == "0"
    assert root.findtext("datetime/day") == "20261120"
    assert (root.findtext("sender/inn"), root.findtext("sender/name")) == ("7700000001", "ООО «Тест»")
    assert (root.findtext("area/inn"), root.findtext("area/name")) == ("7700000002", "Площадка №1")

    mps = root.findall("area/measuringpoint")
    assert [(m.get("code"), m.get("name")) for m in mps] == [
        ("770000000000101", "ТП-1, ввод 1"),
        ("m2", "m2"),  # no point configured: the meter's name
    ]
    m1 = {c.get("code"): c for c in mps[0].findall("measuringchannel")}
    assert sorted(m1) == ["01", "02", "03"]  # R- has neither tag nor profile
    for channel in m1.values():
        periods = channel.findall("period")
        assert len(periods) == 48
        assert (periods[0].get("start"), periods[0].get("end")) == ("0000", "0030")
        assert (periods[20].get("start"), periods[20].get("end")) == ("1000", "1030")
        assert (periods[47].get("start"), periods[47].get("end")) == ("2330", "0000")

    def values(code: str) -> list[tuple[str | None, str | None]]:
        return [(p.find("value").get("status"), p.findtext("value")) for p in m1[code].iter("period")]

    a_plus = values("01")
    # no reading from 10:00:07 to 12:00:07 local: boundaries 10:30 .. 12:00 are unknown
    missing = {20, 21, 22, 23, 24}
    for i, (status, text) in enumerate(a_plus):
        if i in missing:
            assert (status, text) == ("1", "0"), i
        elif i == 5:
            assert (status, text) == ("0", "700"), i  # the meter's profile record wins
        else:
            assert (status, text) == ("0", "500"), i  # 0.5 kWh per half-hour, in Wh
    assert values("02")[:3] == [("0", "100"), ("0", "200"), ("0", "300")]
    assert set(values("02")[3:]) == {("1", "0")}
    assert set(values("03")) == {("1", "0")}  # a stored tag with no data that day
    assert [c.get("code") for c in mps[1].findall("measuringchannel")] == ["01"]


async def test_80020_utf8_files_and_persistent_numbers(
    filled: SqliteReadingStore, mapping: SiteMapping, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    days = [DAY, DAY + timedelta(days=1)]
    first = await export_80020(filled, mapping, days, ["m1"], out, "utf-8", created=CREATED)
    again = await export_80020(filled, mapping, days[:1], ["m1"], out, "utf-8", created=CREATED)
    fixed = await export_80020(filled, mapping, days[:1], ["m1"], out, first_number=500)
    assert [p.name for p in first + again + fixed] == [
        "80020_7700000001_20261120_1.xml",
        "80020_7700000001_20261121_2.xml",
        "80020_7700000001_20261120_3.xml",
        "80020_7700000001_20261120_500.xml",
    ]
    data = first[0].read_bytes()
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert "ТП-1, ввод 1".encode() in data
    next_day = etree.fromstring(first[1].read_bytes())
    a_plus = next_day.find("area/measuringpoint/measuringchannel[@code='01']")
    statuses = [v.get("status") for v in a_plus.iter("value")]
    assert statuses == ["1"] * 48  # readings end at 00:20:07: nothing is extrapolated


# -- CSV --------------------------------------------------------------------------------------
async def test_csv_export(filled: SqliteReadingStore, tmp_path: Path) -> None:
    start, end = MIDNIGHT, MIDNIGHT + timedelta(days=1)
    path = tmp_path / "csv" / "export.csv"
    count = await export_csv(filled, ["m1"], start, end, path, MSK)
    with path.open(encoding="cp1251", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == HEADER
    body = rows[1:]
    assert len(body) == count
    readings = [r for r in body if r[0] == "reading"]
    expected = [r for r in _energy_readings() if start <= r.source_time < end]
    assert len(readings) == len(expected) == 144 - 11
    assert readings[0] == ["reading", "m1", "ap", "2026-11-20T00:00:07+03:00", str(expected[0].value), "Good"]
    archive = [r for r in body if r[0] != "reading"]
    assert archive[0] == ["daily", "m1", "A+", "2026-11-20T00:00:00+03:00", "1000.0", "0"]
    assert [r[2] for r in archive if r[0] == "profile"] == ["A-", "A-", "A-", "A+"]
    assert await export_csv(filled, ["m2"], start, end, tmp_path / "empty.csv", MSK) == 0


def _wh(mapping: SiteMapping) -> SiteMapping:
    """The mapping with values written in Wh (multiplier 1000)."""
    from dataclasses import replace

    return replace(mapping, export=replace(mapping.export, value_multiplier=1000.0))
