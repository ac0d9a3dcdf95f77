"""Smoke test of the benchmarks at a tiny size, so that they do not rot.

Figures are not checked (benchmarks print figures, never timed assertions): each benchmark must
exit cleanly and print its Markdown section with the rows it promises. The four run at once, as
separate processes, to keep the test short.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TINY: dict[str, tuple[list[str], list[str]]] = {
    "bus": (
        ["bench.bus_efficiency", "--meters", "3", "--registers", "2", "--baud", "115200",
         "--cycles", "1", "--dead", "1", "--dead-cycles", "2", "--settle", "0"],
        ["## Bus efficiency", "| all healthy |", "1 dead", "Wire check"],
    ),
    "dial": (
        ["bench.dial_in_scale", "--modules", "4", "--interval", "2", "--cycles", "1", "--warmup", "0.5",
         "--identify-limit", "20"],
        ["## Dial-in scale", "| modules identified |", "modules polled in each measured cycle",
         "OPC UA tags served per second", "listener: 4 connections accepted"],
    ),
    "startup": (
        ["bench.startup", "--meters", "4", "--tags", "3"],
        ["## Start-up", "spawn → OPC UA port serving", "resident memory when serving"],
    ),
    "soak": (
        ["bench.soak", "--seconds", "4", "--sample", "2", "--warmup", "1", "--meters", "2"],
        ["## Soak", "| time | tasks |", "Top growth by line"],
    ),
}  # fmt: skip


@pytest.mark.timeout(90)
def test_benchmarks_run_at_a_tiny_size() -> None:
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (argv, _) in TINY.items()
    }
    outputs = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=80)
            assert proc.returncode == 0, f"{name} failed:\n{err[-3000:]}"
            outputs[name] = out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (_, expected) in TINY.items():
        for text in expected:
            assert text in outputs[name], f"{name}: {text!r} missing from\n{outputs[name]}"


def test_run_all_has_both_sizes_of_every_benchmark() -> None:
    from bench.run_all import BENCHMARKS

    assert set(BENCHMARKS) == {"bus", "dial", "startup", "opcua", "modbus"}
    for quick, full in BENCHMARKS.values():
        assert quick[:2] == full[:2] if quick[0] == "-m" else quick[0] == full[0]
        target = quick[1] if quick[0] == "-m" else quick[0]
        path = ROOT / (target.replace(".", "/") + ".py" if quick[0] == "-m" else target)
        assert path.is_file(), path
