"""`make run` itself: the demo as a subprocess, read over OPC UA and Modbus, status page, SIGTERM.

The demo uses its documented fixed ports (OPC UA 4840, Modbus 5020, status 8080, dial-in 7001,
simulated gateway 7002) on 127.0.0.1, exactly as a user's first run does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bridge.commands.run import demo_mapping_path
from bridge.config.loader import load_mapping
from bridge.config.modbus_map import resolve_modbus_map

DEMO_PORTS = (4840, 5020, 8080, 7001, 7002)
EXE = Path(sys.executable).parent / "milur-bridge"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as r:
        return json.loads(r.read())


def _wait_for_good_values(deadline: float) -> dict:
    """Poll the status API until every meter of the demo has Good values."""
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = _get_json("http://127.0.0.1:8080/api/status")
            tags = [t for m in last["meters"] for t in m["tags"]]
            meters_good = all(
                any(t["quality"] == "Good" for t in m["tags"]) for m in last["meters"]
            )
            if tags and meters_good:
                return last
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"demo meters never all Good: {json.dumps(last)[:2000]}")


@pytest.fixture
def demo_process(tmp_path):
    busy = [p for p in DEMO_PORTS if not _port_free(p)]
    if busy:
        pytest.fail(f"the demo's documented ports are taken on this machine: {busy}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            [str(EXE), "run"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            yield proc, stderr_path
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_make_run_demo_serves_opcua_modbus_and_status_then_stops_cleanly(demo_process):
    proc, stderr_path = demo_process
    status = _wait_for_good_values(time.monotonic() + 45)
    names = {m["name"] for m in status["meters"]}
    assert names == {"input307", "office107", "gateway307", "flat11", "flat12", "house104"}
    banner = stderr_path.read_text()
    assert "opc.tcp://127.0.0.1:4840/milur-bridge" in banner and "127.0.0.1:5020" in banner

    mapping = load_mapping(demo_mapping_path())
    placement = next(p for p in resolve_modbus_map(mapping).placements if p.key == "input307.voltage_a")

    async def read_both() -> tuple[float, ua.DataValue, list[int]]:
        async with Client("opc.tcp://127.0.0.1:4840/milur-bridge", timeout=10) as client:
            ns = await client.get_namespace_index(mapping.opcua.namespace_uri)
            node = client.get_node(ua.NodeId("input307.voltage_a", ns))
            dv = await node.read_data_value()
        modbus = AsyncModbusTcpClient("127.0.0.1", port=5020, timeout=5)
        await modbus.connect()
        try:
            if placement.table.value == "holding":
                rr = await modbus.read_holding_registers(
                    placement.address, count=placement.words, device_id=placement.unit_id
                )
            else:
                rr = await modbus.read_input_registers(
                    placement.address, count=placement.words, device_id=placement.unit_id
                )
        finally:
            modbus.close()
        assert not rr.isError(), rr
        return float(dv.Value.Value), dv, list(rr.registers)

    opc_value, dv, registers = asyncio.run(asyncio.wait_for(read_both(), 30))
    assert dv.StatusCode.is_good()
    assert dv.SourceTimestamp is not None
    assert 200.0 < opc_value < 260.0, opc_value  # the simulator's phase voltage moves around 230 V
    decoded = AsyncModbusTcpClient.convert_from_registers(
        registers, AsyncModbusTcpClient.DATATYPE.FLOAT32
    )
    assert 200.0 < float(decoded) < 260.0, decoded

    with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=3) as r:
        page = r.read().decode()
    assert "milur-bridge" in page
    metrics = urllib.request.urlopen("http://127.0.0.1:8080/metrics", timeout=3).read().decode()
    assert 'milur_channel_requests_total{channel="rs485"}' in metrics

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    log = stderr_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "stopped" in log
