"""Shared pieces of the benchmarks: resident memory, file-descriptor limit, Markdown output.

Every benchmark prints a Markdown section on stdout (``bench/run_all.py`` collects them into one
report). Figures only: nothing here asserts on speed.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_bytes(pid: int | None = None) -> int:
    """Current resident set size of a process (this one by default), from /proc."""
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path, encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that need the port up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    """``met`` or ``MISSED by N %`` for a figure against its target."""
    ok = value <= target if lower_is_better else value >= target
    if ok:
        return "met"
    miss = (value / target - 1) if lower_is_better else (1 - value / target)
    return f"MISSED by {miss * 100:.0f} %"


def kib(n: float) -> str:
    """Bytes as KiB with one decimal."""
    return f"{n / 1024:.1f} KiB"


def mib(n: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{n / 1024 / 1024:.1f} MiB"
