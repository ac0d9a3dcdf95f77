"""Run the fuzz targets for a bounded time each: ``python -m fuzz.run [--seconds 60] [TARGET ...]``.

With atheris installed (``pip install atheris``; optional, not a dependency of the bridge) every
target runs under libFuzzer in its own process, coverage-guided, with a corpus kept in
``var/fuzz/corpus/<target>/``. Without it, a Hypothesis run of random inputs stands in for the
same time. A crash leaves its input in ``var/fuzz/crashes/``: copy it to
``tests/security/fuzz_regressions/<target>/`` so that the test suite replays it for good.

Exit status: 0 when every target ran its time without a failure, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("var/fuzz")
NAMES = ("frame_decoder", "request_decoder", "identification")


def _seed_corpus(name: str) -> Path:
    from fuzz.targets import seeds

    corpus = WORK / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for data in seeds()[name]:
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return corpus


def _run_atheris(name: str, seconds: int) -> bool:
    corpus = _seed_corpus(name)
    crashes = WORK / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "fuzz.run", "--atheris-child", name,
        f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=2048",
        f"-artifact_prefix={crashes}/{name}-", "-print_final_stats=1", str(corpus),
    ]
    print(f"fuzz {name}: atheris for {seconds} s", flush=True)
    return subprocess.run(command, check=False).returncode == 0


def _atheris_child(name: str, args: list[str]) -> None:
    import atheris  # type: ignore[import-untyped,unused-ignore]

    with atheris.instrument_imports():
        import bridge.protocol.milur  # noqa: F401
        import bridge.transport.identification  # noqa: F401
        from fuzz import targets
    atheris.Setup([sys.argv[0], *args], targets.TARGETS[name])
    atheris.Fuzz()


def _run_hypothesis(name: str, seconds: int) -> bool:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase

    from fuzz import targets

    target = targets.TARGETS[name]
    for data in targets.seeds()[name]:
        target(data)
    failing: list[bytes] = []

    @settings(
        max_examples=2000,
        deadline=None,
        database=DirectoryBasedExampleDatabase(str(WORK / "hypothesis")),
        suppress_health_check=list(HealthCheck),
    )
    @given(st.binary(max_size=2048))
    def run(data: bytes) -> None:
        try:
            target(data)
        except BaseException:
            failing.append(data)
            raise

    print(f"fuzz {name}: Hypothesis for {seconds} s", flush=True)
    deadline = time.monotonic() + seconds
    rounds = 0
    try:
        while time.monotonic() < deadline:
            run()
            rounds += 1
    except Exception as exc:
        crash = WORK / "crashes" / f"{name}-{hashlib.sha1(failing[-1]).hexdigest()}"
        crash.parent.mkdir(parents=True, exist_ok=True)
        crash.write_bytes(failing[-1])
        print(f"fuzz {name}: FAILED on {failing[-1].hex()} ({exc!r}); saved as {crash}")
        return False
    finally:
        targets.close()
    print(f"fuzz {name}: {rounds * 2000} inputs, no failure")
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-child"]:
        _atheris_child(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"default: all of {NAMES}")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in NAMES]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(NAMES)}")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    run = _run_atheris if engine == "atheris" else _run_hypothesis
    results = {name: run(name, args.seconds) for name in args.targets or NAMES}
    for name, ok in results.items():
        print(f"fuzz {name}: {'ok' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
