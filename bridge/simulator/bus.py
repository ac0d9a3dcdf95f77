"""A simulated RS-485 bus: meters sharing one line, requests routed by address.

A :class:`BusConnection` is one byte stream into the bus (a pseudo-terminal, a TCP socket, a GSM
module's socket). It frames requests with the codec's ``RequestDecoder`` (never relying on packet
boundaries), hands them to the addressed meter and returns the answers to send. Broadcast requests
to ``FF FF FF FF`` are answered by the bus: FUNC 0F by the first meter, FUNC C3 (GSM identification)
only by a connection that belongs to a GSM module with an IMEI (protocol notes §7).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bridge.protocol.milur.codec import RequestDecoder
from bridge.protocol.milur.frames import BROADCAST, Address
from bridge.simulator import encoding
from bridge.simulator.meter import F_IDENTIFY, F_NETADDR, SimulatedMeter

BROADCAST_VALUE = 0xFFFFFFFF
#: Bytes 5..8 of the identification reply (unknown meaning, §7); bytes 9..23 carry the IMEI.
IDENTIFY_INFO = b"\x0c\x01\x00\x00"
#: Length of the packets that make a Milur 104 deaf to its next request (protocol notes §1).
QUIRK_PACKET_LENGTH = 8
WAKE_BYTE = b"\xff"


@dataclass(frozen=True, slots=True)
class Answer:
    """Bytes to send back, after ``delay`` seconds (the meter's ``delay`` fault)."""

    payload: bytes
    delay: float = 0.0


def identify_reply(imei: str) -> bytes:
    """The 26-byte GSM identification reply: ``FF FF FF FF C3`` + 4 bytes + IMEI + CRC (§7)."""
    if len(imei) != 15 or not imei.isdigit():
        raise ValueError(f"an IMEI is 15 digits, got {imei!r}")
    return encoding.frame(BROADCAST_VALUE, 4, F_IDENTIFY, IDENTIFY_INFO + imei.encode("ascii"))


class SimulatedBus:
    """Meters on one line. Addresses must be unique per address width."""

    def __init__(self, meters: Iterable[SimulatedMeter] = ()) -> None:
        self.meters: list[SimulatedMeter] = []
        # Milur 104 quirk (protocol notes §1): meters that will ignore their next request
        self._deaf: set[int] = set()
        for meter in meters:
            self.add(meter)

    def __repr__(self) -> str:
        return f"SimulatedBus({self.meters!r})"

    def add(self, meter: SimulatedMeter) -> None:
        """Put one more meter on the line."""
        if self.find(meter.address, meter.address_width) is not None:
            raise ValueError(f"two meters with address {meter.address} on one bus")
        self.meters.append(meter)

    def find(self, address: int, width: int) -> SimulatedMeter | None:
        """The meter answering to ``address`` in the given width, if any."""
        for meter in self.meters:
            if meter.address == address and meter.address_width == width:
                return meter
        return None

    def connection(self, imei: str | None = None) -> BusConnection:
        """A new byte stream into this bus; with ``imei`` it answers the C3 identification."""
        return BusConnection(self, imei)

    # ------------------------------------------------------------------ the 104 quirk
    def packet_seen(self, length: int) -> None:
        """Any packet on the line; an 8-byte one makes every quirky 104 deaf to its next request."""
        if length == QUIRK_PACKET_LENGTH:
            self._deaf.update(id(m) for m in self.meters if m.wake_quirk)

    def wake(self) -> None:
        """A lone ``FF`` byte on the line: the 104s listen again (protocol notes §1)."""
        self._deaf.clear()

    def _is_deaf(self, meter: SimulatedMeter) -> bool:
        if id(meter) in self._deaf:
            self._deaf.discard(id(meter))
            return True
        return False

    # ------------------------------------------------------------------ routing
    def route(self, address: int, width: int, func: int, data: bytes, imei: str | None) -> Answer | None:
        """Answer one request, or None when nobody answers."""
        if width == 4 and address == BROADCAST_VALUE:
            if func == F_IDENTIFY:
                return Answer(identify_reply(imei)) if imei else None
            if func == F_NETADDR and self.meters:
                return Answer(self.meters[0].network_address_reply())
            return None
        meter = self.find(address, width)
        if meter is None:
            return None
        if self._is_deaf(meter):
            meter.counters.requests += 1
            meter.counters.ignored += 1
            return None
        reply = meter.handle(func, data, width)
        if reply is None:
            return None
        return Answer(reply, meter.faults.delay)


class BusConnection:
    """One byte stream into a bus (a line or a socket); keeps its own partial-frame buffer."""

    def __init__(self, bus: SimulatedBus, imei: str | None = None) -> None:
        self.bus = bus
        self.imei = imei
        # Known addresses settle frames that parse under both address widths; the relay register
        # (84) takes a 1-byte value, so its writes are framed exactly (codec RequestDecoder).
        addresses = [Address(m.address, m.address_width) for m in bus.meters] + [BROADCAST]
        self._decoder = RequestDecoder(widths=(1, 4), addresses=addresses, write_sizes={84: 1})

    def feed(self, data: bytes, *, packet: bool = False) -> list[Answer]:
        """Bytes from the master; returns the answers to send, in order.

        ``packet=True`` says ``data`` is one whole packet delimited by line silence (serial): like
        a real meter, the receiver starts afresh after the silence, an 8-byte packet counts for the
        104 quirk even when it is not a valid frame, and a lone ``FF`` packet is the wake byte.
        On a stream (TCP) a lone ``FF`` read while no frame is half received also wakes the 104s,
        but is still framed: it may be the first byte of a frame to address 255 split by TCP.
        """
        if packet:
            self._decoder.clear()
            if data == WAKE_BYTE:
                self.bus.wake()
                return []
        elif data == WAKE_BYTE and not self._decoder.buffered:
            self.bus.wake()
        self._decoder.feed(data)
        answers: list[Answer] = []
        # A packet makes the 104s deaf only to requests *after* it: route first, then note it.
        while (request := self._decoder.next_request()) is not None:
            answer = self.bus.route(
                request.address.value,
                request.address.width,
                int(request.func),
                bytes(request.data),
                self.imei,
            )
            if not packet:
                self.bus.packet_seen(len(request.encode()))
            if answer is not None:
                self.bus.packet_seen(len(answer.payload))
                answers.append(answer)
        if packet:
            self.bus.packet_seen(len(data))
        return answers
