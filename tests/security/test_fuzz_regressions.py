"""Replays the fuzz targets' seeds and every kept hostile input, plus a short random run of each.

``make fuzz`` runs the same targets for minutes (fuzz/run.py). An input that once crashed a target
is kept in ``fuzz_regressions/<target>/`` and replayed here for good.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
KEPT = Path(__file__).parent / "fuzz_regressions"


def _targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_targets", ROOT / "fuzz" / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _targets()


@pytest.fixture(autouse=True)
def _close_identification_loop() -> Iterator[None]:
    yield
    targets.close()


def _kept() -> list[tuple[str, Path]]:
    return sorted((d.name, f) for d in KEPT.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file())


def test_every_target_has_kept_inputs() -> None:
    assert {name for name, _ in _kept()} == set(targets.TARGETS)


@pytest.mark.parametrize(("name", "path"), _kept(), ids=lambda v: getattr(v, "name", v))
def test_kept_input(name: str, path: Path) -> None:
    targets.TARGETS[name](path.read_bytes())


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds(name: str) -> None:
    for data in targets.seeds()[name]:
        targets.TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_random_inputs(name: str) -> None:
    target = targets.TARGETS[name]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=1024))
    def run(data: bytes) -> None:
        target(data)

    run()


def test_the_identification_target_can_fail() -> None:
    """The oracle is not vacuous: a well-formed IMEI reply does identify the connection."""
    from bridge.protocol.milur import BROADCAST, IdentifyReply

    script = [IdentifyReply(BROADCAST, "356938035643809").encode()]
    found = asyncio.run(targets._identify(targets._METHODS[0], script))
    assert found == "356938035643809"
