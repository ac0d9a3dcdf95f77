"""Nothing acknowledged by flush() is lost when the process is killed (SIGKILL) mid-burst."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

WRITER = Path(__file__).with_name("durability_writer.py")
ROOT = Path(__file__).resolve().parents[2]


async def _run_and_kill(db: Path, acks_before_kill: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        str(db),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    last_ack = 0
    try:
        for _ in range(acks_before_kill):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
            if not line:
                err = await proc.stderr.read()
                raise AssertionError(f"writer died: {err.decode(errors='replace')}")
            last_ack = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-burst: the writer keeps submitting
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last_ack


@pytest.mark.parametrize("acks_before_kill", [5, 23])
async def test_acknowledged_rows_survive_sigkill(tmp_path: Path, acks_before_kill: int) -> None:
    db = tmp_path / "burst.sqlite3"
    last_ack = await _run_and_kill(db, acks_before_kill)
    assert last_ack >= acks_before_kill * 120
    with sqlite3.connect(db) as conn:  # reopening recovers the WAL like the bridge would
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
        # the acknowledged rows are exactly the values 0 .. last_ack-1
        values = {v for (v,) in conn.execute("SELECT value FROM reading")}
    assert count >= last_ack
    assert set(range(last_ack)) <= {int(v) for v in values}
