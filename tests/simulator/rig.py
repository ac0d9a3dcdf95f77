"""A master-side helper for simulator tests: requests through a bus connection, replies decoded."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.protocol.milur.codec import FrameDecoder
from bridge.protocol.milur.frames import (
    Address,
    ErrorReply,
    ReadReply,
    Reply,
    Request,
    open_session_request,
    read_request,
)
from bridge.simulator import BusConnection, SimulatedBus, SimulatedMeter

FACTORY = b"\xff" * 6


@dataclass
class Master:
    """Sends requests into a bus connection (no I/O) and decodes the answers with the codec."""

    bus: SimulatedBus
    imei: str | None = None
    conn: BusConnection = field(init=False)
    decoder: FrameDecoder = field(init=False)

    def __post_init__(self) -> None:
        self.conn = self.bus.connection(self.imei)
        self.decoder = FrameDecoder()

    def raw(self, data: bytes) -> bytes:
        """All answer bytes for ``data``."""
        return b"".join(a.payload for a in self.conn.feed(data))

    def ask(self, request: Request) -> Reply | None:
        """The decoded reply to ``request``, or None when nothing valid came back."""
        self.decoder = FrameDecoder()
        self.decoder.expect(request)
        self.decoder.feed(self.raw(request.encode()))
        return self.decoder.next_frame()

    def login(self, addr: Address, password: bytes = FACTORY, level: int = 1) -> Reply | None:
        return self.ask(open_session_request(addr, level, password))

    def read(self, addr: Address, register: int) -> bytes:
        reply = self.ask(read_request(addr, register))
        assert isinstance(reply, ReadReply), reply
        return reply.value

    def error(self, request: Request) -> int:
        reply = self.ask(request)
        assert isinstance(reply, ErrorReply), reply
        return reply.code


def one(meter: SimulatedMeter) -> tuple[Master, Address]:
    """A master talking to a bus with just ``meter``, and the meter's wire address."""
    return Master(SimulatedBus([meter])), Address(meter.address, meter.address_width)
