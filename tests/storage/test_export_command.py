"""``milur-bridge export`` end to end: a real mapping file, the loader, a filled store, the CLI."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from bridge.commands import export
from bridge.storage import Reading, SqliteReadingStore, TagClass
from bridge.tags import Quality

pytestmark = [pytest.mark.timeout(60)]


def main(argv: list[str]) -> int:
    """The export command alone (independent of the other commands' modules)."""
    parser = argparse.ArgumentParser(prog="milur-bridge")
    sub = parser.add_subparsers()
    export.add_arguments(sub.add_parser(export.NAME))
    args = parser.parse_args(argv)
    return export.run(args)


MSK = ZoneInfo("Europe/Moscow")
DAY = date(2026, 11, 20)

SITE_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<mapping name="export test">
  <storage path="{db}"/>
  <export sender-inn="7700000001" sender-name="ООО «Тест»" area-inn="7700000002"
          area-name="Площадка №1" value-multiplier="1000">
    <point meter="feeder1" code="770000000000101" name="ТП-1, ввод 1"/>
  </export>
  <channel name="bus1">
    <serial port="/dev/null"/>
    <meter name="feeder1" model="307" address="49932">
      <tag name="ap" register="energy_active_import_total"/>
      <tag register="voltage_a"/>
    </meter>
    <meter name="feeder2" model="307" address="49933">
      <tag name="ap" register="energy_active_import_total"/>
    </meter>
  </channel>
  <poll-group name="energy" interval="10m" meters="feeder1 feeder2"
              registers="energy_active_import_total"/>
  <poll-group name="fast" interval="5s" meters="feeder1" registers="voltage_a"/>
</mapping>
"""


async def _fill(db: Path) -> int:
    """feeder1.ap every 10 minutes over DAY (local), 1 kWh per hour; feeder2 one reading."""
    store = SqliteReadingStore(db)
    await store.open()
    start = datetime(2026, 11, 20, tzinfo=MSK).astimezone(UTC)
    rows = [
        Reading("feeder1.ap", 500.0 + i / 6, Quality.Good, start + timedelta(minutes=10 * i))
        for i in range(6 * 24 + 1)
    ]
    store.submit(rows, TagClass.ENERGY)
    store.submit([Reading("feeder2.ap", 7.0, Quality.Good, start + timedelta(hours=5))], TagClass.ENERGY)
    await store.close()
    return len(rows)


@pytest.fixture
async def site(tmp_path: Path) -> Path:
    db = tmp_path / "data" / "r.sqlite3"
    await _fill(db)
    path = tmp_path / "site.xml"
    path.write_text(SITE_XML.format(db=db), encoding="utf-8")
    return path


def test_80020_through_the_cli(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["export", str(site), "--from", "2026-11-20", "--to", "2026-11-21", "--format", "80020"]
    assert main([*argv, "--out", str(out)]) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [
        "80020_7700000001_20261120_1.xml",
        "80020_7700000001_20261121_2.xml",
    ]
    assert capsys.readouterr().out.split() == [str(f) for f in files]
    data = files[0].read_bytes()
    assert data.startswith(b"<?xml version='1.0' encoding='windows-1251'?>")
    root = etree.fromstring(data)
    points = root.findall("area/measuringpoint")
    assert [p.get("code") for p in points] == ["770000000000101", "feeder2"]
    values = [v.text for v in points[0].iter("value")]
    assert values == ["500"] * 48  # 0.5 kWh per half-hour in Wh
    feeder2 = {v.get("status") for v in points[1].iter("value")}
    assert feeder2 == {"1"}  # one reading makes no half-hour


def test_csv_one_meter_utf8(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    argv = ["export", str(site), "--from", "2026-11-20", "--to", "2026-11-20", "--meter", "feeder2"]
    assert main([*argv, "--out", str(out), "--encoding", "utf-8"]) == 0
    with (out / "readings_20261120_20261120.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["record", "meter", "name", "time", "value", "quality"],
        ["reading", "feeder2", "ap", "2026-11-20T05:00:00+03:00", "7.0", "Good"],
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "2026-11-21", "--to", "2026-11-20"], "is before --from"),
        (["--from", "2026-11-20", "--to", "2026-11-20", "--meter", "nope"], "unknown meter nope"),
        (["--from", "2026-11-20", "--to", "2026-11-20", "--db", "/nonexistent/x.db"], "no reading store"),
    ],
)
def test_bad_input_is_a_clear_error(
    site: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(site), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_mapping_prints_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<mapping><channel name="x"><bogus/></channel></mapping>', encoding="utf-8")
    assert main(["export", str(bad), "--from", "2026-11-20", "--to", "2026-11-20"]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err


def test_console_script_runs(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "script"
    exe = Path(sys.executable).with_name("milur-bridge")
    argv = [str(exe), "export", str(site), "--from", "2026-11-20", "--to", "2026-11-20"]
    done = subprocess.run(
        [*argv, "--format", "80020", "--number", "41", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["80020_7700000001_20261120_41.xml"]
