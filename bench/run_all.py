"""``make bench``: runs the benchmarks one after the other and writes one Markdown report.

Quick sizes by default (a few minutes on 2 cores); ``--full`` uses the sizes the targets are
stated for (32 meters on the line, 10,000 dial-in modules). Each benchmark runs in its own
process; its Markdown section is printed as it finishes and the whole report is written to
``bench/reports/<date>.md`` (git-ignored). North side: ``bench/opcua_bench.py`` and
``bench/modbus_bench.py`` are run as they are and their output is quoted.

Run: ``.venv/bin/python -m bench.run_all [--full] [--only bus dial startup opcua modbus]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.measure import ROOT

#: name → (command for the quick size, command for the full size); ``-m`` modules or script paths
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bus": (
        ["-m", "bench.bus_efficiency", "--meters", "32", "--cycles", "2", "--dead-cycles", "8"],
        ["-m", "bench.bus_efficiency", "--meters", "32", "--cycles", "5", "--dead-cycles", "40"],
    ),
    "dial": (
        ["-m", "bench.dial_in_scale", "--modules", "1000", "--interval", "10", "--cycles", "2"],
        ["-m", "bench.dial_in_scale", "--modules", "10000", "--interval", "10", "--cycles", "3"],
    ),
    "startup": (
        ["-m", "bench.startup", "--meters", "1000", "--tags", "20", "--repeat", "1"],
        ["-m", "bench.startup", "--meters", "1000", "--tags", "20", "--repeat", "3"],
    ),
    "opcua": (
        ["bench/opcua_bench.py", "--meters", "1000", "--tags", "20", "--seconds", "3"],
        ["bench/opcua_bench.py", "--meters", "1000", "--tags", "20", "--seconds", "5"],
    ),
    "modbus": (
        ["bench/modbus_bench.py", "--seconds", "2"],
        ["bench/modbus_bench.py"],
    ),
}
QUOTED = {
    "opcua": "OPC UA publisher (bench/opcua_bench.py)",
    "modbus": "Modbus publisher (bench/modbus_bench.py)",
}


def machine() -> str:
    """One line describing where the figures come from."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), ""
            )
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model or platform.processor() or 'unknown'}), "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def run_one(name: str, argv: list[str], timeout: float) -> str:
    """Run one benchmark; its Markdown section (quoted output for the north-side scripts)."""
    command = [sys.executable, *argv]
    shown = " ".join([".venv/bin/python", *argv])
    t0 = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        output, failed = done.stdout.strip(), done.returncode != 0
        errors = done.stderr.strip()
    except subprocess.TimeoutExpired as exc:
        output, failed, errors = str(exc.stdout or ""), True, f"timed out after {timeout:.0f} s"
    took = time.perf_counter() - t0
    if name in QUOTED:
        section = f"## {QUOTED[name]}\n\n```\n{output}\n```\n"
    else:
        section = output + "\n"
    section += f"\n_Command: `{shown}` ({took:.0f} s)._\n"
    if failed:
        tail = "\n".join(errors.splitlines()[-15:])
        section += f"\n**The benchmark failed** (exit status or timeout):\n\n```\n{tail}\n```\n"
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full sizes (10,000 modules ...)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per benchmark, seconds")
    parser.add_argument("--reports", type=Path, default=ROOT / "bench" / "reports")
    args = parser.parse_args(argv)

    started = datetime.now()
    size = "full" if args.full else "quick"
    sections = [
        f"# milur-bridge benchmarks, {started:%Y-%m-%d %H:%M} ({size} size)\n",
        f"Machine: {machine()}.\n",
    ]
    print("\n".join(sections), flush=True)
    failures = 0
    for name, (quick, full) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        section = run_one(name, full if args.full else quick, args.timeout)
        failures += "**The benchmark failed**" in section
        print(section, flush=True)
        sections.append(section)
    args.reports.mkdir(parents=True, exist_ok=True)
    path = args.reports / f"{started:%Y-%m-%d-%H%M}-{size}.md"
    path.write_text("\n".join(sections), encoding="utf-8")
    print(f"Report written to {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
