"""The ready examples in mappings/ load; ``milur-bridge validate`` prints a summary or every error."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.commands import validate
from bridge.config.loader import MappingError, load_mapping
from bridge.config.model import ChannelKind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "mappings"
CASES = Path(__file__).with_name("cases")
NAMES = ["rs485-concentrator", "gsm-server-mode", "gsm-dial-in", "gateway-meter"]


@pytest.mark.parametrize("name", NAMES)
def test_example_loads_and_every_meter_is_polled_and_tagged(name: str) -> None:
    m = load_mapping(EXAMPLES / f"{name}.xml")
    assert m.meters and m.tags and m.poll_groups
    for meter in m.meters:
        polled = {r for g in m.poll_groups if meter.name in g.meters for r in g.registers}
        tagged = {t.register for t in m.tags if t.meter == meter.name}
        assert polled and polled == tagged, meter.name


def test_examples_show_what_their_names_promise() -> None:
    rs485 = load_mapping(EXAMPLES / "rs485-concentrator.xml")
    assert {c.kind for c in rs485.channels} == {ChannelKind.SERIAL, ChannelKind.TCP_CLIENT}
    assert rs485.meter("flat3").wake_byte  # model 104
    server = load_mapping(EXAMPLES / "gsm-server-mode.xml")
    assert {c.kind for c in server.channels} == {ChannelKind.TCP_CLIENT}
    dial = load_mapping(EXAMPLES / "gsm-dial-in.xml")
    assert {c.kind for c in dial.channels} == {ChannelKind.DIAL_IN} and dial.listeners
    gateway = load_mapping(EXAMPLES / "gateway-meter.xml")
    behind = gateway.meters_on("gateway-gsm")
    assert len(behind) >= 3 and all(m.backup_channel == "rf-backup" for m in behind)
    assert gateway.meters_on("rf-backup") == ()


def test_every_mapping_in_the_folder_loads() -> None:
    """Other ready mappings (the demo, ...) must stay valid too."""
    found = sorted(p.stem for p in EXAMPLES.glob("*.xml"))
    assert set(NAMES) <= set(found)
    for name in found:
        load_mapping(EXAMPLES / f"{name}.xml")


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    code = validate.run(parser.parse_args([str(path)]))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(EXAMPLES / "gsm-dial-in.xml", capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("gsm-dial-in.xml: OK")
    m = load_mapping(EXAMPLES / "gsm-dial-in.xml")
    assert f"  channels     {len(m.channels)} ({len(m.channels)} dial-in)" in lines
    assert any(line.startswith(f"  meters       {len(m.meters)} (") for line in lines)
    assert f"  tags         {len(m.tags)}" in lines
    assert f"  poll groups  {len(m.poll_groups)}" in lines
    assert f"  listeners    {len(m.listeners)}" in lines


def test_validate_prints_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    path = CASES / "several-errors.xml"
    code, out, err = _run(path, capsys)
    assert code == 1
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert out.splitlines() == [str(e) for e in info.value.errors]
    assert all(line.startswith(f"{path}:") for line in out.splitlines())
    assert f"{len(info.value.errors)} errors" in err


def test_validate_through_the_console_script(tmp_path: Path) -> None:
    """The installed entry point, run as a user runs it."""
    good = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(EXAMPLES / "gateway-meter.xml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0 and "OK" in good.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(CASES / "duplicate-tag.xml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "duplicate-tag.xml:6: " in bad.stdout
