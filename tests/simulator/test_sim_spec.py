"""Text descriptions of meters and spec files, and a spec served by all three forms."""

from __future__ import annotations

import asyncio

import pytest
import serial

from bridge.protocol.milur.frames import Address, open_session_request
from bridge.simulator import RunningSimulator, SpecError, load_spec, parse_meter
from bridge.simulator.pty import PtyLine
from bridge.simulator.serving import DialOutModem, TcpMeterServer

IMEI = "356938035643809"


def test_parse_meter_options() -> None:
    m = parse_meter(
        "305:49932,serial=012049932,password=010203040506,width=4,energy-scale=0.001,"
        "clock=bcd,quirk=on,firmware=123,levels=0/1/2,session-timeout=90,locked-error=0D"
    )
    assert (m.model, m.address, m.address_width, m.serial_number) == ("305", 49932, 4, "012049932")
    assert m.energy_scale == 0.001 and m.clock_bcd and m.wake_quirk and m.firmware == "123"
    assert m.access_levels == (0, 1, 2) and m.session_timeout == 90 and m.locked_error == 0x0D
    plain = parse_meter("104:12")
    assert plain.wake_quirk and plain.address_width == 1 and plain.energy_scale is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("308:1", "MODEL:ADDRESS"),
        ("307", "MODEL:ADDRESS"),
        ("307:x", "address must be a number"),
        ("307:1,width=2", "width must be 1 or 4"),
        ("307:1,password=zz", "12 hex digits"),
        ("307:1,clock=local", "binary or bcd"),
        ("307:1,quirk=maybe", "on or off"),
        ("307:1,bogus", "key=value"),
        ("307:300,width=1", "does not fit"),
    ],
)
def test_parse_meter_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_meter(text)


def test_spec_file_errors_carry_file_and_line(tmp_path) -> None:
    path = tmp_path / "bad.sim"
    path.write_text("# site\nmeter 307:1\n\nserial /dev/x\ndial 127.0.0.1:7001\ntcp 1.2.3.4:x\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}:4: unknown line 'serial'")
    assert lines[1] == f"{path}:5: dial needs imei=<15 digits>"
    assert lines[2].startswith(f"{path}:6: expected HOST:PORT")


def open_session_on(device: str) -> bytes:
    with serial.Serial(device, 9600, timeout=1) as port:
        port.write(open_session_request(Address(255), 1, b"\xff" * 6).encode())
        return port.read(5)


@pytest.mark.timeout(30)
async def test_spec_served_on_pty_tcp_and_dial_out(tmp_path, no_leftovers) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def bridge_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes.fromhex("FF FF FF FF C3 0C 01 10 FC"))
        await received.put(await reader.readexactly(26))
        writer.close()

    listener = await asyncio.start_server(bridge_side, "127.0.0.1", 0)
    dial_port = listener.sockets[0].getsockname()[1]
    path = tmp_path / "site.sim"
    path.write_text(
        "meter 307:255 firmware=123 energy-scale=0.001  # house meter\n"
        "meter 107:49932\n"
        f"pty link={tmp_path / 'tty0'}\n"
        "tcp 127.0.0.1:0\n"
        f"dial 127.0.0.1:{dial_port} imei={IMEI} reconnect=off\n"
    )
    sim = RunningSimulator(load_spec(path))
    await sim.start()
    try:
        kinds = [type(f) for f in sim.forms]
        assert kinds == [PtyLine, TcpMeterServer, DialOutModem]
        reply = await asyncio.to_thread(open_session_on, str(tmp_path / "tty0"))
        assert reply == bytes.fromhex("FF 08 01 87 F0")
        tcp = sim.forms[1]
        assert isinstance(tcp, TcpMeterServer)
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.port)
        writer.write(open_session_request(Address(49932, 4), 1, b"\xff" * 6).encode())
        async with asyncio.timeout(3):
            assert await reader.readexactly(8) == bytes.fromhex("0C C3 00 00 08 01 82 C6")
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(5):
            ident = await received.get()
        assert ident[9:24].decode() == IMEI
    finally:
        await sim.stop()
        listener.close()
        await listener.wait_closed()
        await asyncio.get_running_loop().shutdown_default_executor()
    assert sim.forms == []
