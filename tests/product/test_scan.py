"""``milur-bridge scan`` against simulated meters on TCP and on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest

import bridge.cli
from bridge.cli import main
from bridge.commands import scan
from bridge.simulator import PtyLine, SimulatedBus, SimulatedMeter, TcpMeterServer

pytestmark = pytest.mark.timeout(60)
SECRET = bytes.fromhex("010203040506")


@pytest.fixture(autouse=True)
def only_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI entry point with just this command (others may be mid-edit)."""
    monkeypatch.setattr(bridge.cli, "_command_modules", lambda: [scan])


async def run_cli(*argv: str) -> int:
    """The synchronous CLI in a worker thread while the simulator runs on this loop."""
    return await asyncio.to_thread(main, list(argv))


def rows(out: str) -> dict[int, dict[str, str]]:
    """CSV output by address."""
    return {int(r["address"]): r for r in csv.DictReader(io.StringIO(out))}


@pytest.fixture
async def line(no_leftovers: None) -> AsyncIterator[tuple[TcpMeterServer, dict[int, SimulatedMeter]]]:
    meters = {
        1: SimulatedMeter("307", 1, firmware="123"),
        7: SimulatedMeter("104", 7),
        12: SimulatedMeter("105", 12, password=SECRET),
        255: SimulatedMeter("107", 255),
        49932: SimulatedMeter("307", 49932, address_width=4),
        51017: SimulatedMeter("305", 51017, password=SECRET),
    }
    async with TcpMeterServer(SimulatedBus(meters.values())) as server:
        yield server, meters
    await asyncio.get_running_loop().shutdown_default_executor()


async def test_scan_over_tcp_finds_one_byte_meters_and_reports_a_refused_password(line, capsys) -> None:
    server, meters = line
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("scan", "--channel", url, "--range", "1-14,255", "--timeout", "0.2",
                       "--format", "csv")  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    found = rows(out)
    assert sorted(found) == [1, 7, 12, 255]
    assert found[1]["model"] == "Milur 307" and found[1]["firmware"] == "123"
    assert found[1]["serial"] == meters[1].serial_number and found[1]["width"] == "1"
    assert found[7]["model"] == "Milur 104"  # found although the 104 quirk is on (§1)
    assert found[255]["model"] == "Milur 107" and found[255]["session"] == "level 1"
    assert found[12]["session"].startswith("refused: password incorrect")
    assert found[12]["model"] == "?"
    # exactly one session attempt per address, and the wrong password only once (§3 lockout)
    assert meters[12].counters.wrong_passwords == 1
    assert all(meters[a].counters.sessions_opened == 1 for a in (1, 7, 255))
    assert "4 meter(s) answered; 15 address(es)" in err
    assert "010203" not in out + err and "FFFFFFFFFFFF" not in (out + err).upper()


async def test_wide_scan_from_a_serial_file_with_the_right_password(line, tmp_path, capsys) -> None:
    server, meters = line
    serials = tmp_path / "serials.txt"
    serials.write_text("# site list\n012049932\n012051017  # feeder\n\n099999999\n")
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("scan", "--channel", url, "--wide", "--serials", str(serials),
                       "--password", "010203040506", "--timeout", "0.2")  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ADDRESS", "WIDTH", "MODEL", "SERIAL", "FIRMWARE", "SESSION"]
    by_address = {line.split()[0]: line for line in lines[1:]}
    assert set(by_address) == {"49932", "51017"}  # 999999 does not answer
    # 49932 has the factory password: a wrong one is refused once and the scan goes on
    assert "refused: password incorrect" in by_address["49932"]
    assert meters[49932].counters.wrong_passwords == 1
    assert by_address["51017"].split()[:4] == ["51017", "4", "Milur", "305"]
    assert meters[51017].serial_number in by_address["51017"]
    assert meters[51017].counters.sessions_opened == 1
    assert meters[1].counters.requests == 0  # no 1-byte scan without --range


async def test_a_locked_meter_is_reported_and_not_asked_again(line, capsys) -> None:
    server, meters = line
    for _ in range(3):  # someone else's three wrong passwords: locked for 30 minutes
        meters[255].handle(0x08, bytes([1]) + SECRET, 1)
    assert meters[255].locked
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("scan", "--channel", url, "--range", "255", "--timeout", "0.2", "--format", "csv")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert rows(out)[255]["session"].startswith("refused: access denied (error 09)")
    assert meters[255].counters.wrong_passwords == 3  # the scan added no attempt of its own


async def test_silent_meter_is_not_found_and_a_corrupt_one_is_reported(line, capsys) -> None:
    server, meters = line
    meters[1].faults.silent = True
    meters[7].faults.bad_crc = True
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("scan", "--channel", url, "--range", "1-7", "--timeout", "0.2", "--format", "csv")
    out, err = capsys.readouterr()
    assert rc == 0, err
    found = rows(out)
    assert list(found) == [7]
    assert found[7]["session"].startswith("corrupt reply (CRC)")
    meters[7].faults.bad_crc = False
    rc = await run_cli("scan", "--channel", url, "--range", "2-6", "--timeout", "0.2")
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and "0 meter(s) answered" in err


async def test_scan_on_a_pseudo_terminal_with_both_address_forms(no_leftovers, capsys) -> None:
    meters = [
        SimulatedMeter("307", 3),
        SimulatedMeter("104", 4),
        SimulatedMeter("107", 49932, address_width=4),
    ]
    async with PtyLine(SimulatedBus(meters), 9600, turnaround=0.005) as pty:
        # 4-byte read requests are 8-byte packets, after which a 104 ignores the next request
        # (§1): the scan's wake byte keeps the 104 visible.
        rc = await run_cli("scan", "--channel", pty.device, "--range", "2-5", "--wide",
                           "--serials", "012049932,012000777", "--timeout", "0.15",
                           "--format", "csv")  # fmt: skip
        out, err = capsys.readouterr()
    await asyncio.get_running_loop().shutdown_default_executor()
    assert rc == 0, err
    found = rows(out)
    assert sorted(found) == [3, 4, 49932]
    assert [found[a]["width"] for a in (3, 4, 49932)] == ["1", "1", "4"]
    assert found[4]["model"] == "Milur 104" and found[49932]["model"] == "Milur 107"
    assert all(m.counters.sessions_opened == 1 for m in meters)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--range", "1-300"], "--range"),
        (["--range", "x"], "--range"),
        (["--wide"], "--wide needs --serials"),
        (["--serials", "012049932"], "--serials needs --wide"),
        (["--wide", "--serials", "012049932,01204993A"], "not a serial number"),
        (["--wide", "--serials", "no-such-file.txt"], "neither a file nor a list"),
        (["--password", "FFFF"], "--password must be 12 hex digits"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(argv: list[str], message: str, capsys) -> None:
    assert main(["scan", "--channel", "loop://", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_channel_that_cannot_be_opened_exits_1(tmp_path, capsys) -> None:
    assert main(["scan", "--channel", str(tmp_path / "ttyUSB9"), "--range", "1"]) == 1
    assert "cannot open" in capsys.readouterr().err


def test_range_and_serial_parsing() -> None:
    assert scan.parse_range("1-3, 2,255") == [1, 2, 3, 255]
    assert scan.wide_address("012049932") == 49932
    assert scan.wide_address("12") == 12


async def test_a_meter_that_answers_without_a_session_gets_no_session_request(line, capsys) -> None:
    server, meters = line
    meters[1].handle(0x08, bytes([1]) + b"\xff" * 6, 1)  # a session is already open (another tool)
    assert meters[1].session_level == 1
    url = f"socket://127.0.0.1:{server.port}"
    rc = await run_cli("scan", "--channel", url, "--range", "1", "--timeout", "0.2", "--format", "csv")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert rows(out)[1]["session"] == "not needed" and rows(out)[1]["model"] == "Milur 307"
    assert meters[1].counters.sessions_opened == 1  # the one opened above, none by the scan
