"""`milur-bridge run` options that need no running bridge: --check, a bad mapping, JSON logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from bridge.logsetup import configure_logging

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "milur-bridge"
CASES = ROOT / "tests" / "config" / "cases"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "run", *args], capture_output=True, text=True, timeout=60)


def test_check_accepts_the_demo_and_starts_nothing():
    result = _run("--check", str(ROOT / "mappings" / "demo.xml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr
    assert "OPC UA" not in result.stderr  # no banner: nothing was started


def test_bad_mapping_is_refused_with_file_and_line_before_anything_starts():
    bad = CASES / "several-errors.xml"
    result = _run(str(bad))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(bad) + ":")]
    assert len(lines) >= 2, result.stderr  # every error at once, each with file:line
    assert all(line.split(":")[1].isdigit() for line in lines[:-1])
    assert "nothing was started" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_mapping_file_is_one_clear_line():
    result = _run("/nonexistent/site.xml")
    assert result.returncode == 1
    assert "/nonexistent/site.xml" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_log_format_writes_one_object_per_line(capfd):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", "json")
        logging.getLogger("bridge.test").info("meter %s recovered", "flat12")
        err = capfd.readouterr().err.strip().splitlines()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    record = json.loads(err[-1])
    assert record["message"] == "meter flat12 recovered"
    assert record["level"] == "INFO" and record["name"] == "bridge.test"
