"""Interoperability: a node-opcua client (another stack) reads values and status codes.

node-opcua is installed once per session into tests/node/node_modules (git-ignored) from the
pinned package.json / package-lock.json; the test skips only when node or npm is missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.publishers.opcua import OpcUaPublisher
from bridge.tags import TagStore

from .conftest import define_all, make_mapping, read_time, settings

NODE_DIR = Path(__file__).resolve().parents[1] / "node"

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """The interop directory with node-opcua installed (npm ci on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node/npm not installed: tests/setup_system.sh installs nodejs and npm")
    if not (NODE_DIR / "node_modules" / "node-opcua" / "package.json").is_file():
        verb = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
        done = subprocess.run(
            [npm, verb, "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert done.returncode == 0, f"npm {verb} failed:\n{done.stderr[-2000:]}"
    return NODE_DIR


@pytest.mark.usefixtures("no_leftovers", "executor_closed")
async def test_node_opcua_reads_value_and_status(node_opcua: Path, endpoint: str) -> None:
    mapping = make_mapping(meters=1, channels=1, opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    store.set_good({"m1_1.voltage_a": 229.75, "m1_1.serial": "4711"}, read_time(7))
    store.set_good({"m1_1.current_a": 4.5}, read_time(8))
    store.set_failed(["m1_1.current_a"], bad_after=None)  # Bad_CommunicationError
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        ns = pub.namespace_index
        ids = [f"ns={ns};s=m1_1.voltage_a", f"ns={ns};s=m1_1.serial", f"ns={ns};s=m1_1.current_a"]
        # a worker thread of the default executor (closed by ``executor_closed``), not asyncio's
        # child watcher thread, which may outlive the process by a moment
        done = await asyncio.to_thread(
            subprocess.run,
            [shutil.which("node") or "node", "read_value.js", endpoint, *ids],
            cwd=node_opcua,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        out = done.stdout
    finally:
        await pub.stop()
    # node-opcua logs to stdout too: our line is the one marked RESULT
    line = next(x for x in out.decode().splitlines() if x.startswith("RESULT "))
    results = {r["nodeId"].rsplit("=", 1)[1]: r for r in json.loads(line.removeprefix("RESULT "))}
    for key in ("m1_1.voltage_a", "m1_1.serial"):
        stored = store.get(key)
        assert stored is not None
        assert results[key]["value"] == stored.value
        assert results[key]["status"] == stored.quality.status_code == 0
        assert results[key]["sourceTimestamp"] == stored.source_time.isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
    bad = results["m1_1.current_a"]
    stored = store.get("m1_1.current_a")
    assert stored is not None
    assert bad["status"] == stored.quality.status_code == 0x80050000
    assert bad["statusName"] == "BadCommunicationError"
