"""``milur-bridge read`` and ``milur-bridge simulate`` against the simulator (pty and TCP)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

import bridge.cli
from bridge.cli import main
from bridge.commands import read, simulate
from bridge.simulator import PtyLine, SimulatedBus, SimulatedMeter, TcpMeterServer

pytestmark = pytest.mark.timeout(60)
LINE = re.compile(r"^(\w+) (-?\d+(?:\.\d+)?)(?: (\w+))?$")


@pytest.fixture(autouse=True)
def only_these_commands(monkeypatch) -> None:
    """The real CLI entry point, with just the commands under test: another command that cannot
    be imported at the moment must not fail these tests (the subprocess test uses them all)."""
    monkeypatch.setattr(bridge.cli, "_command_modules", lambda: [read, simulate])


async def run_cli(*argv: str) -> int:
    """The CLI in a worker thread (it is synchronous) while the simulator runs on this loop."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
async def tcp_meters(no_leftovers: None) -> AsyncIterator[tuple[TcpMeterServer, list[SimulatedMeter]]]:
    meters = [
        SimulatedMeter("307", 255, firmware="123", energy_scale=0.001),
        SimulatedMeter("107", 49932, password=bytes.fromhex("010203040506")),
        SimulatedMeter("105", 12),
    ]
    async with TcpMeterServer(SimulatedBus(meters)) as server:
        yield server, meters
    await asyncio.get_running_loop().shutdown_default_executor()


async def test_read_over_tcp_prints_engineering_values(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    url = f"socket://127.0.0.1:{server.port}"
    names = ["voltage_a", "current_b", "frequency", "energy_active_import_total", "firmware"]
    rc = await run_cli(
        "read", "--channel", url, "--address", "255", "--model", "307", "--energy-scale", "0.001", *names
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == names
    values = {m.group(1): (float(m.group(2)), m.group(3)) for m in map(LINE.match, lines[:4]) if m}
    assert 215 < values["voltage_a"][0] < 245 and values["voltage_a"][1] == "V"
    assert re.fullmatch(r"voltage_a \d+\.\d{3} V", lines[0])
    assert 49.8 < values["frequency"][0] < 50.2 and values["frequency"][1] == "Hz"
    expected_kwh = meters[0].values()["energy_active_import_total"]
    assert abs(values["energy_active_import_total"][0] - expected_kwh) < 1.0
    assert lines[-1] == "firmware 123"
    assert meters[0].counters.sessions_opened == 1


async def test_read_detects_the_model_and_uses_a_four_byte_address(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli(
        "read",
        "--channel",
        url,
        "--address",
        "49932",
        "--password",
        "010203040506",
        "serial_number",
        "voltage",
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.splitlines()[0] == "serial_number 012049932"
    assert out.splitlines()[1].startswith("voltage ")


async def test_wrong_password_exits_3_and_is_not_retried(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("read", "--channel", url, "--address", "49932", "voltage")
    _, err = capsys.readouterr()
    assert rc == 3
    assert "password incorrect" in err and len(err.strip().splitlines()) == 1
    assert meters[1].counters.wrong_passwords == 1
    assert "FFFFFFFFFFFF" not in err.upper().replace(" ", "")


async def test_silent_meter_times_out_with_exit_1(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    meters[2].faults.silent = True
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("read", "--channel", url, "--address", "12", "--timeout", "0.3", "voltage")
    _, err = capsys.readouterr()
    assert rc == 1 and "no reply from meter 12" in err


async def test_bad_crc_and_meter_error_exit_codes(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    url = f"socket://127.0.0.1:{server.port}"
    meters[2].faults.bad_crc = True
    rc = await run_cli("read", "--channel", url, "--address", "12", "--timeout", "0.3", "voltage")
    _, err = capsys.readouterr()
    assert rc == 1 and "CRC" in err
    meters[2].faults.bad_crc = False
    rc = await run_cli("read", "--channel", url, "--address", "12", "--model", "307", "voltage_a")
    _, err = capsys.readouterr()
    assert rc == 4 and "error 02" in err  # a single-phase meter has no register 100


async def test_read_on_a_pseudo_terminal_with_the_104_wake_byte(tmp_path, capsys, no_leftovers) -> None:
    bus = SimulatedBus([SimulatedMeter("104", 7), SimulatedMeter("307", 8)])
    async with PtyLine(bus, 9600, turnaround=0.005) as line:
        rc = await run_cli(
            "read",
            "--channel",
            line.device,
            "--address",
            "7",
            "--model",
            "104",
            "frequency",
            "voltage",
            "frequency",
            "current",
        )
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert [x.split()[0] for x in out.splitlines()] == ["frequency", "voltage", "frequency", "current"]
        rc = await run_cli("read", "--channel", line.device, "--address", "8", "voltage_b")
        out, err = capsys.readouterr()
        assert rc == 0, err and out.startswith("voltage_b ")
    await asyncio.get_running_loop().shutdown_default_executor()


def test_read_help_lists_registers_of_each_model(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["read", "--help"])
    out = capsys.readouterr().out
    assert "104, 105, 107" in out and "305, 307" in out
    assert "voltage_a" in out and "energy_active_import_t4" in out and "relay_state" in out


def test_read_usage_errors(capsys) -> None:
    assert main(["read", "--channel", "loop://", "--address", "1", "--password", "12"]) == 2
    assert main(["read", "--channel", "/nonexistent/tty", "--address", "1", "voltage"]) == 1
    err = capsys.readouterr().err
    assert "12 hex digits" in err and "cannot open" in err


def test_simulate_command_serves_tcp_until_interrupted(capsys) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "simulate",
            "--meter",
            "307:255",
            "--meter",
            "107:49932,serial=012049932",
            "--tcp",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "running; Ctrl-C stops":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line.strip())
        port = next(int(x.rsplit(":", 1)[1]) for x in lines if x.startswith("tcp server"))
        assert "meter 107 address 49932 (4-byte) serial 012049932" in lines
        rc = main(["read", "--channel", f"socket://127.0.0.1:{port}", "--address", "49932", "serial_number"])
        assert rc == 0 and capsys.readouterr().out == "serial_number 012049932\n"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_simulate_rejects_bad_descriptions(capsys, tmp_path) -> None:
    assert main(["simulate", "--meter", "999:1", "--tcp", "127.0.0.1:0"]) == 2
    assert main(["simulate", "--meter", "307:1"]) == 2
    spec = tmp_path / "site.sim"
    spec.write_text("meter 307:255 colour=blue\ntcp nowhere\nmeter 107:1 password=12\n")
    assert main(["simulate", "--file", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "unknown Milur model" in err or "MODEL:ADDRESS" in err
    assert "nothing to serve" in err
    assert f"{spec}:1: unknown meter option 'colour'" in err
    assert f"{spec}:2:" in err and f"{spec}:3: password must be 12 hex digits" in err


async def test_unknown_register_is_refused_before_talking_to_the_meter(tcp_meters, capsys) -> None:
    server, meters = tcp_meters
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("read", "--channel", url, "--address", "12", "--model", "105", "voltage_a")
    assert rc == 2 and "unknown register(s) for model 105: voltage_a" in capsys.readouterr().err
    assert meters[2].counters.requests == 0
