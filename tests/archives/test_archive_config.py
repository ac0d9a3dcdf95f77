"""The <archives> section of a mapping: defaults, every attribute, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loader import MappingError, load_mapping
from bridge.config.model import ArchiveSettings

BASE = """<mapping>
  <channel name="line1">
    <tcp host="127.0.0.1" port="7000"/>
    <meter name="a" model="107" address="12"><tags all="true"/></meter>
    <meter name="b" model="307" address="13"><tags all="true"/></meter>
  </channel>
  <poll-group name="fast" interval="30s" meters="all" registers="frequency"/>
  {archives}
</mapping>
"""


def write(tmp_path: Path, archives: str) -> Path:
    path = tmp_path / "site.xml"
    path.write_text(BASE.format(archives=archives), encoding="utf-8")
    return path


def test_absent_section_means_off(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, ""))
    assert mapping.archives == ArchiveSettings()
    assert not mapping.archives.covers("a")


def test_every_attribute(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, """<archives meters="b" daily="false" profile="true"
        journal="false" schedule="7 * * * *" backfill-days="3" chunk="2" search-retry="0.5"
        search-timeout="20" daily-registers="energy_active_import_total" profile-scale="0.01"
        power-journal="4" timezone="Asia/Yekaterinburg" clock-interval="3600"
        clock-correction="true" clock-threshold="2" clock-max-step="10"
        clock-write-register="15" clock-bcd="true"/>"""))
    s = mapping.archives
    assert s == ArchiveSettings(
        enabled=True, meters=("b",), daily=False, profile=True, journal=False,
        schedule="7 * * * *", backfill_days=3, chunk=2, search_retry=0.5, search_timeout=20.0,
        daily_registers=("energy_active_import_total",), profile_scale=0.01, power_journal=4,
        timezone="Asia/Yekaterinburg", clock_interval=3600.0, clock_correction=True,
        clock_threshold=2.0, clock_max_step=10.0, clock_write_register=15, clock_bcd=True,
    )
    assert s.covers("b") and not s.covers("a")


def test_all_meters_and_disabled(tmp_path: Path) -> None:
    assert load_mapping(write(tmp_path, '<archives meters="all"/>')).archives.covers("a")
    off = load_mapping(write(tmp_path, '<archives enabled="false"/>')).archives
    assert not off.covers("a")


@pytest.mark.parametrize(
    ("archives", "message"),
    [
        ('<archives meters="a nobody"/>', "archives: no meter named nobody"),
        ('<archives schedule="every day"/>', "archives schedule: cron"),
        ('<archives timezone="Mars/Olympus"/>', "unknown time zone 'Mars/Olympus'"),
        ('<archives meters="all a"/>', 'meters="all" cannot be combined'),
        ('<archives backfill-days="0"/>', "backfill-days"),
    ],
)
def test_bad_values_are_reported_with_the_line(tmp_path: Path, archives: str, message: str) -> None:
    path = write(tmp_path, archives)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    text = str(err.value)
    assert message in text
    assert f"{path}:8: " in text  # the line of <archives>
    assert len(text.splitlines()) == 1  # one error, reported once
