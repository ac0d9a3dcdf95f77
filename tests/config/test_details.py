"""Details: start lines of multi-line tags, plain schema messages, cron and interval syntax."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

from bridge.config.builder import parse_duration
from bridge.config.checks import cron_problem
from bridge.config.loader import MappingError, load_mapping

MULTILINE = """\
<?xml version="1.0"?>
<!-- a comment that mentions <meter name="x"> and <channel> -->
<mapping>
  <channel name="line1"
           response-timeout="1">
    <serial port="/dev/ttyUSB0"/>
    <![CDATA[ <meter> ]]>
    <meter name="m1"
           model="107"
           address="1"
           level="999">
    </meter>
    <meter name="m2"
           model="107"
           address="2"/>
  </channel>
</mapping>
"""


def test_errors_point_at_the_first_line_of_a_multi_line_tag(tmp_path: Path) -> None:
    path = tmp_path / "multi.xml"
    path.write_text(MULTILINE.replace("<![CDATA[ <meter> ]]>", ""))
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert [(e.line, e.message) for e in info.value.errors] == [
        (8, '<meter level="999">: must be a whole number from 0 to 255')
    ]
    path.write_text(MULTILINE.replace("<![CDATA[ <meter> ]]>", "").replace('level="999"', 'level="1"'))
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert [(e.line, e.message.split(" is in")[0]) for e in info.value.errors] == [
        (8, "meter 'm1'"),
        (13, "meter 'm2'"),
    ]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<mapping><channel name="c"/></mapping>',
            "<channel> needs a child element: one of <serial>, <tcp>, <dial-in>",
        ),
        ('<mapping><chanel name="c"/></mapping>', "<chanel> is not allowed here"),
        ("<mapping>text</mapping>", "<mapping> must not contain text"),
        ('<mapping><modbus port="-1"/></mapping>', '<modbus port="-1">: must be at least 0'),
        (
            '<mapping><modbus flat-unit-id="300"/></mapping>',
            '<modbus flat-unit-id="300">: must be at most 247',
        ),
        ('<mapping><opcua security="None Plain"/></mapping>', "must be one of None, Basic256Sha256_Sign"),
        ('<mapping><storage enabled="yes"/></mapping>', '<storage enabled="yes">: must be true or false'),
        ("<mapping><listener/></mapping>", "<listener>: attribute 'name' is required"),
    ],
)
def test_schema_messages_are_plain(tmp_path: Path, xml: str, message: str) -> None:
    path = tmp_path / "m.xml"
    path.write_text(xml)
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert any(message in e.message for e in info.value.errors), str(info.value)
    assert not any("Element '" in e.message for e in info.value.errors)


@pytest.mark.parametrize(
    "expr",
    ["*/5 * * * *", "0,30 * * * *", "0 8-18 * * mon-fri", "15 3 1 jan *", "*/15 0-23/2 1-31 1-12 0-6"],
)
def test_cron_accepted_by_us_and_by_apscheduler(expr: str) -> None:
    assert cron_problem(expr) is None
    CronTrigger.from_crontab(expr, timezone=UTC)


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "* * * * funday",
        "a-b * * * *",
        "5--6 * * * *",
    ],
)
def test_cron_rejected_by_us_and_by_apscheduler(expr: str) -> None:
    assert cron_problem(expr) is not None
    with pytest.raises(ValueError):
        CronTrigger.from_crontab(expr, timezone=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("500ms", 0.5), ("2", 2.0), ("1.5h", 5400.0)],
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_zero_interval_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "z.xml"
    path.write_text(
        '<mapping><channel name="c"><serial port="loop://"/>'
        '<meter name="m" model="105" address="1"><tags all="true"/></meter></channel>'
        '<poll-group name="p" interval="0s" meters="m" registers="voltage"/></mapping>'
    )
    with pytest.raises(MappingError, match=r"poll group 'p': interval '0s' must be above 0"):
        load_mapping(path)
