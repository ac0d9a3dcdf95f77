"""Serving forms with real sockets and a real pseudo-terminal: TCP server, dial-out modem, pty."""

from __future__ import annotations

import asyncio
import time

import pytest
import serial

from bridge.protocol.milur.codec import FrameDecoder
from bridge.protocol.milur.frames import (
    Address,
    IdentifyReply,
    ReadReply,
    Reply,
    Request,
    SessionReply,
    identify_request,
    open_session_request,
    read_request,
)
from bridge.simulator import DialOutModem, PtyLine, SimulatedBus, SimulatedMeter, TcpMeterServer

FACTORY = b"\xff" * 6
IMEI = "356938035643809"
pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]


async def transact(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request, *, split: bool
) -> Reply:
    """Send ``request`` (byte by byte when ``split``) and decode its reply from the stream."""
    decoder = FrameDecoder()
    decoder.expect(request)
    frame = request.encode()
    chunks = [frame[i : i + 1] for i in range(len(frame))] if split else [frame]
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        if split:
            await asyncio.sleep(0.002)
    async with asyncio.timeout(3):
        while (reply := decoder.next_frame()) is None:
            data = await reader.read(256)
            assert data, "connection closed"
            decoder.feed(data)
    return reply


# ---------------------------------------------------------------- TCP server mode
async def test_five_meters_behind_one_socket_split_frames() -> None:
    meters = [SimulatedMeter("105", a) for a in (1, 2, 3, 4)] + [SimulatedMeter("307", 49932)]
    async with TcpMeterServer(SimulatedBus(meters)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            for i, meter in enumerate(meters):
                addr = Address(meter.address, meter.address_width)
                reply = await transact(
                    reader, writer, open_session_request(addr, 1, FACTORY), split=i % 2 == 0
                )
                assert isinstance(reply, SessionReply) and reply.address == addr
                reply = await transact(reader, writer, read_request(addr, 68), split=i % 2 == 1)
                assert isinstance(reply, ReadReply)
                assert reply.value.decode() == meter.serial_number
            # two requests in one segment get two answers
            a1, a2 = Address(1), Address(2)
            writer.write(read_request(a1, 9).encode() + read_request(a2, 9).encode())
            await writer.drain()
            expected = 2 * (1 + 5 + 2)
            async with asyncio.timeout(3):
                got = await reader.readexactly(expected)
            assert got[0] == 1 and got[8] == 2
        finally:
            writer.close()
            await writer.wait_closed()
        assert server.accepted == 1
        assert all(m.counters.sessions_opened == 1 for m in meters)
        assert [m.counters.requests for m in meters] == [3, 3, 2, 2, 2]


async def test_drop_cuts_the_connection_and_the_server_keeps_listening(wait_until) -> None:
    async with TcpMeterServer(SimulatedBus([SimulatedMeter("107", 7)])) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await wait_until(lambda: server.connections == 1, what="accepted")
        server.drop()
        async with asyncio.timeout(3):
            assert await reader.read(10) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        reply = await transact(reader, writer, open_session_request(Address(7), 1, FACTORY), split=False)
        assert isinstance(reply, SessionReply)
        writer.close()
        await writer.wait_closed()
        assert server.accepted == 2


async def test_server_mode_module_with_imei_answers_identification() -> None:
    async with TcpMeterServer(SimulatedBus([SimulatedMeter("107", 7)]), imei=IMEI) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        reply = await transact(reader, writer, identify_request(), split=True)
        assert isinstance(reply, IdentifyReply) and reply.imei == IMEI
        writer.close()
        await writer.wait_closed()


# ---------------------------------------------------------------- GSM client mode
class Listener:
    """The bridge's side of a dial-in: accepts connections and hands them to the test."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.connections = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self.connections.put((r, w))

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def accept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(5):
            return await self.connections.get()

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        while not self.connections.empty():
            self.connections.get_nowait()[1].close()
        await self.server.wait_closed()


async def test_dial_out_modem_is_silent_then_identifies_then_routes() -> None:
    meters = [SimulatedMeter("107", 3), SimulatedMeter("307", 49932)]
    async with Listener() as listener:
        modem = DialOutModem(SimulatedBus(meters), "127.0.0.1", listener.port, IMEI)
        async with modem:
            reader, writer = await listener.accept()
            with pytest.raises(TimeoutError):  # client mode: it does not announce itself (§7)
                async with asyncio.timeout(0.3):
                    await reader.read(1)
            writer.write(identify_request().encode())
            async with asyncio.timeout(3):
                raw = await reader.readexactly(26)
            assert raw[:4] == b"\xff" * 4 and raw[9:24].decode() == IMEI
            for meter in meters:
                addr = Address(meter.address, meter.address_width)
                reply = await transact(reader, writer, open_session_request(addr, 1, FACTORY), split=True)
                assert isinstance(reply, SessionReply)
            writer.close()
        assert modem.dials == 1


async def test_dial_out_modem_redials_after_drop_and_sends_keepalives() -> None:
    async with Listener() as listener:
        modem = DialOutModem(
            SimulatedBus([SimulatedMeter("105", 1)]),
            "127.0.0.1",
            listener.port,
            IMEI,
            keepalive=0.05,
            keepalive_bytes=b"\x00\x00",
            wrap=True,
            reconnect_delay=0.05,
        )
        async with modem:
            reader, writer = await listener.accept()
            async with asyncio.timeout(3):
                assert await reader.readexactly(2) == b"\x00\x00"
            modem.drop()
            writer.close()
            reader, writer = await listener.accept()  # dialled again
            assert modem.dials == 2
            modem.reconnect = False
            writer.write(open_session_request(Address(1), 1, FACTORY).encode())
            async with asyncio.timeout(3):
                data = await reader.readuntil(b"\x0d")
            assert data.lstrip(b"\x00").startswith(b"\x0a\x01\x08\x01")  # wrapped in 0A .. 0D
            writer.close()
            await asyncio.sleep(0.2)
            assert modem.dials == 2 and not modem.connected


# ---------------------------------------------------------------- serial line on a pty
def serial_transaction(device: str, baud: int, request: Request) -> tuple[bytes, float, float]:
    """(reply bytes, seconds from write to the last byte, spread of the reply's arrival)."""
    with serial.Serial(device, baud, timeout=0.02) as port:
        frame = request.encode()
        decoder = FrameDecoder()
        decoder.expect(request)
        start = time.monotonic()
        port.write(frame)
        first = None
        data = b""
        while time.monotonic() - start < 5:
            chunk = port.read(max(1, port.in_waiting))
            if chunk:
                first = first or time.monotonic()
                data += chunk
                decoder.feed(chunk)
                if decoder.next_frame() is not None:
                    break
        end = time.monotonic()
        return data, end - start, end - (first or end)


async def test_pty_honours_wire_time() -> None:
    meter = SimulatedMeter("307", 255, model_text="Milur 307 three-phase meter")
    baud = 1200
    char = 10 / baud
    async with PtyLine(SimulatedBus([meter]), baud, turnaround=0.02) as line:
        login = open_session_request(Address(255), 1, FACTORY)
        data, _, _ = await asyncio.to_thread(serial_transaction, line.device, baud, login)
        assert data == bytes.fromhex("FF 08 01 87 F0")
        data, elapsed, spread = await asyncio.to_thread(
            serial_transaction, line.device, baud, read_request(Address(255), 32)
        )
    wire_bytes = len(read_request(Address(255), 32).encode()) + len(data)
    assert len(data) == 1 + 5 + len(meter.model_text)
    # lower bounds only: the simulated line may be slower than the wire, never faster
    assert elapsed >= 0.9 * (wire_bytes * char + 0.02)
    assert spread >= 0.8 * (len(data) - 4) * char  # the reply trickles in byte time by byte time
    assert line.bytes_sent >= len(data) and line.bytes_received >= wire_bytes - len(data)


def wake_then_read(device: str, first: Request, second: Request) -> list[bytes]:
    with serial.Serial(device, 9600, timeout=0.3) as port:
        out = []
        for request, wake in ((first, False), (second, False), (second, True)):
            if wake:
                port.write(b"\xff")
                time.sleep(0.02)
                port.reset_input_buffer()
            port.write(request.encode())
            out.append(port.read(64))
        return out


async def test_pty_104_wake_byte_is_its_own_packet() -> None:
    meter = SimulatedMeter("104", 12)
    async with PtyLine(SimulatedBus([meter]), 9600, turnaround=0.005) as line:
        login = open_session_request(Address(12), 1, FACTORY)
        await asyncio.to_thread(serial_transaction, line.device, 9600, login)
        replies = await asyncio.to_thread(
            wake_then_read, line.device, read_request(Address(12), 9), read_request(Address(12), 1)
        )
    assert len(replies[0]) == 8  # frequency: an 8-byte packet ...
    assert replies[1] == b""  # ... so the next request is ignored (§1)
    assert len(replies[2]) == 9  # the FF wake byte makes it listen again
    assert meter.counters.ignored == 1


def read_after_unplug(device: str) -> str:
    with serial.Serial(device, 9600, timeout=0.2) as port:
        port.write(read_request(Address(1), 1).encode())
        try:
            while True:
                port.read(10)
        except serial.SerialException as exc:
            return str(exc)


async def test_pty_close_unplugs_and_reopen_behind_a_link(tmp_path) -> None:
    link = str(tmp_path / "ttyUSB0")
    line = PtyLine(SimulatedBus([SimulatedMeter("107", 1)]), 9600, link=link)
    await line.start()
    try:
        first_path = line._path
        assert line.device == link
        task = asyncio.create_task(asyncio.to_thread(read_after_unplug, link))
        await asyncio.sleep(0.3)
        await line.close()
        async with asyncio.timeout(5):
            assert await task  # the client's read failed with an error
        assert not line.is_open
        await line.reopen()
        login = open_session_request(Address(1), 1, FACTORY)
        data, _, _ = await asyncio.to_thread(serial_transaction, link, 9600, login)
        assert data == bytes.fromhex("01 08 01") + data[3:] and len(data) == 5
        assert line._path  # a new pty (its path may differ from the first)
        del first_path
    finally:
        await line.close()


async def test_dial_failures_are_logged_once(free_port, wait_until, caplog) -> None:
    port = free_port()  # nobody listens there
    modem = DialOutModem(
        SimulatedBus([SimulatedMeter("105", 1)]), "127.0.0.1", port, IMEI, reconnect_delay=0.01
    )
    async with modem:
        await wait_until(lambda: modem.failed_dials >= 4, what="several dial attempts")
    warnings = [r for r in caplog.records if r.name == "bridge.simulator.serving"]
    assert len(warnings) == 1 and "cannot dial" in warnings[0].getMessage()
    assert modem.dials == 0


async def test_delay_fault_answers_late_over_tcp() -> None:
    meter = SimulatedMeter("107", 7)
    meter.faults.delay = 0.3
    async with TcpMeterServer(SimulatedBus([meter])) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        login = open_session_request(Address(7), 1, FACTORY)
        reply = await transact(reader, writer, login, split=False)
        assert isinstance(reply, SessionReply)
        assert loop.time() - start >= 0.29  # lower bound only: late, never early
        writer.close()
        await writer.wait_closed()
