"""Configuration reload: ``milur-bridge reload`` against a running BridgeApp, and SIGHUP to ``run``.

A bad mapping is refused with its errors and the running mapping stays; a good one with one tag
removed and one added is applied: the new tag gets values, the removed one disappears from the
store, the status API and the OPC UA address space.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import Client, ua

import bridge.cli
from bridge.app import BridgeApp
from bridge.cli import main
from bridge.commands import reload as reload_command
from bridge.config.loader import load_mapping
from bridge.status.passwords import hash_password
from bridge.tags import Quality, TagStore

from .conftest import SitePorts, get_json, site_xml, tag_qualities, write_site

pytestmark = pytest.mark.timeout(90)
EXE = Path(sys.executable).parent / "milur-bridge"
BAD_TAGS = {"Ua": "voltage_a", "X": "no_such_register"}
NEW_TAGS = {"Ua": "voltage_a", "Ia": "current_a"}  # F (frequency) removed, Ia added


@pytest.fixture(autouse=True)
def only_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI entry point with just this command (others may be mid-edit)."""
    monkeypatch.setattr(bridge.cli, "_command_modules", lambda: [reload_command])


def good(store: TagStore, key: str) -> bool:
    value = store.get(key)
    return value is not None and value.quality is Quality.Good


async def cli(*argv: str) -> int:
    """The synchronous CLI in a worker thread, while the bridge runs on this loop."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
async def site(tmp_path: Path, free_port, no_leftovers) -> AsyncIterator[tuple[BridgeApp, Path, SitePorts]]:
    ports = SitePorts.pick(free_port)
    path = write_site(tmp_path, ports)
    app = BridgeApp(load_mapping(path), mapping_path=path)
    await app.start()
    try:
        yield app, path, ports
    finally:
        await app.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


async def test_reload_command_refuses_a_bad_mapping_then_applies_a_good_one(site, capsys, wait_until) -> None:
    app, path, ports = site
    await wait_until(lambda: good(app.store, "m307.F") and good(app.store, "m307.Ua"), within=20)
    running = app.mapping

    path.write_text(site_xml(ports, BAD_TAGS))
    assert await cli("reload", "--url", ports.status_url) == 1
    out, err = capsys.readouterr()
    assert out == "" and "reload refused, the running mapping stays" in err
    assert f"{path}:" in err and "no_such_register" in err
    assert app.mapping is running
    status = await asyncio.to_thread(get_json, f"{ports.status_url}/api/status")
    assert "m307.F" in tag_qualities(status)

    path.write_text(site_xml(ports, NEW_TAGS))
    assert await cli("reload", "--url", ports.status_url + "/") == 0
    out, err = capsys.readouterr()
    assert out.strip() == "reloaded", err
    assert {t.key for t in app.mapping.tags} >= {"m307.Ua", "m307.Ia"}
    assert "m307.F" not in {t.key for t in app.mapping.tags}
    await wait_until(lambda: good(app.store, "m307.Ia"), within=20, what="the added tag polled")
    assert app.store.get("m307.F") is None
    status = await asyncio.to_thread(get_json, f"{ports.status_url}/api/status")
    qualities = tag_qualities(status)
    assert qualities["m307.Ia"] == "Good" and "m307.F" not in qualities

    async with Client(app.mapping.opcua.endpoint, timeout=5) as client:
        ns = await client.get_namespace_index(app.mapping.opcua.namespace_uri)
        value = await client.get_node(ua.NodeId("m307.Ia", ns)).read_value()
        assert isinstance(value, float)
        with pytest.raises(ua.UaStatusCodeError):
            await client.get_node(ua.NodeId("m307.F", ns)).read_value()


async def test_reload_asks_for_the_status_login(
    tmp_path: Path, free_port, capsys, monkeypatch, no_leftovers
) -> None:
    ports = SitePorts.pick(free_port)
    login = ("ops", hash_password("s3cret-pw"))
    path = write_site(tmp_path, ports, status_auth=login, opcua=False, modbus=False)
    app = BridgeApp(load_mapping(path), mapping_path=path)
    await app.start()
    try:
        assert await cli("reload", "--url", ports.status_url) == 1
        assert "authentication required (the status server wants --user)" in capsys.readouterr().err
        monkeypatch.setenv(reload_command.PASSWORD_ENV, "wrong")
        assert await cli("reload", "--url", ports.status_url, "--user", "ops") == 1
        assert "wrong user or password" in capsys.readouterr().err
        monkeypatch.setenv(reload_command.PASSWORD_ENV, "s3cret-pw")
        assert await cli("reload", "--url", ports.status_url, "--user", "ops") == 0
        out, err = capsys.readouterr()
        assert out.strip() == "reloaded" and "s3cret" not in out + err
    finally:
        await app.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


def test_unreachable_bridge_and_bad_url(free_port, capsys) -> None:
    assert main(["reload", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "3"]) == 1
    assert "cannot reach the bridge" in capsys.readouterr().err
    assert main(["reload", "--url", "127.0.0.1:8080"]) == 2
    assert "--url must start with http://" in capsys.readouterr().err


async def test_a_corrected_password_is_tried_once_after_reload(site, capsys, wait_until) -> None:
    app, path, ports = site
    meter = app.simulator[0].bus.find(2, 1)
    await wait_until(lambda: good(app.store, "m107.voltage"), within=20)
    # a wrong password in the mapping: one attempt, then auth_failed and no more attempts (§3)
    path.write_text(site_xml(ports, m107_password="010203040506"))
    meter.expire_session()
    assert await cli("reload", "--url", ports.status_url) == 0
    assert app.collector is not None
    await wait_until(lambda: app.collector.meter_state("m107") == "auth_failed", within=20)
    await asyncio.sleep(2.5)  # more than two poll intervals
    assert meter.counters.wrong_passwords == 1
    value = app.store.get("m107.voltage")
    assert value is not None and value.quality is Quality.Bad_ConfigurationError
    # a reload that leaves the meter as it is does not try again (docs/troubleshooting.md)
    assert await cli("reload", "--url", ports.status_url) == 0
    await asyncio.sleep(2.5)
    assert app.collector.meter_state("m107") == "auth_failed"
    assert meter.counters.wrong_passwords == 1
    # the corrected mapping, reloaded: the meter is polled again
    path.write_text(site_xml(ports))
    assert await cli("reload", "--url", ports.status_url) == 0
    await wait_until(lambda: good(app.store, "m107.voltage"), within=20, what="m107 polled again")
    assert meter.counters.wrong_passwords == 1
    capsys.readouterr()


# --------------------------------------------------------------------------- SIGHUP
def wait_for(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {within} s: {what}")


def test_sighup_reloads_the_run_command(tmp_path: Path, free_port) -> None:
    ports = SitePorts.pick(free_port)
    path = write_site(tmp_path, ports, opcua=False)
    url = f"{ports.status_url}/api/status"
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(EXE), "run", str(path), "--no-uvloop"], cwd=tmp_path, stdout=subprocess.DEVNULL,
            stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        wait_for(lambda: tag_qualities(get_json(url)).get("m307.F") == "Good", 30, "first values")

        path.write_text(site_xml(ports, BAD_TAGS))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log_path.read_text(), 15, "the refusal logged")
        assert "no_such_register" in log_path.read_text()
        assert "m307.F" in tag_qualities(get_json(url))
        assert proc.poll() is None

        path.write_text(site_xml(ports, NEW_TAGS))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: tag_qualities(get_json(url)).get("m307.Ia") == "Good", 20, "the new tag")
        assert "m307.F" not in tag_qualities(get_json(url))
        assert f"reloaded {path}" in log_path.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert "Traceback" not in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
