"""The pymodbus adapter: the only module that imports pymodbus (DESIGN.md rule 9).

pymodbus' ``ModbusTcpServer`` owns the listening socket and the set of client connections; the
connection class answers requests itself from the ``RegisterImage`` and encodes replies with
pymodbus' PDU classes and socket framer. The request path of pymodbus 3.16's
``ServerRequestHandler`` is not used because it

- answers a request it cannot decode (unknown function code, count above 125) with function code
  0x80 instead of the request's own code | 0x80, so clients cannot match the exception;
- handles one frame per received chunk, and its ``send()`` empties the receive buffer, so
  pipelined requests (several transactions in flight, allowed by Modbus TCP) are lost;
- keeps bytes it cannot frame (protocol id ≠ 0) until 516 bytes have piled up;
- spawns a task per request, which the bridge must not leave behind at shutdown.

Answering synchronously inside ``data_received`` also guarantees that a reply is built from the
register image in one go: the update task cannot run in the middle (no torn floats).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from collections.abc import Sequence
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerBase
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from bridge.publishers.modbus_access import ClientGate
from bridge.publishers.modbus_image import (
    MAX_READ_COUNT,
    ExceptionCode,
    RegisterImage,
    UnknownUnit,
)

log = logging.getLogger(__name__)

_MAX_MBAP_LENGTH = 254  # unit id + PDU of at most 253 bytes (Modbus TCP ADU ≤ 260 bytes)
_ADDRESS_COUNT = struct.Struct(">HH")
_RESPONSES: dict[int, type[ModbusPDU]] = {
    3: ReadHoldingRegistersResponse,
    4: ReadInputRegistersResponse,
}


class ImageContext(ModbusServerContext):
    """The register image as a pymodbus datastore (what ``ModbusTcpServer`` is built with).

    The base ``__init__`` is not called on purpose: it converts device contexts into simulator
    devices and logs a deprecation warning; pymodbus uses a context as it is when
    ``old_simulator`` is set.
    """

    def __init__(self, image: RegisterImage) -> None:
        self.image = image
        self.old_simulator = True
        self.simdevices = []

    async def async_getValues(  # noqa: N802 (pymodbus API)
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        """Read registers; unknown unit ids raise pymodbus' NoSuchIdException (→ 0x0B)."""
        try:
            result = self.image.read(device_id, func_code, address, count)
        except UnknownUnit as exc:
            raise NoSuchIdException(f"unit id {device_id}") from exc
        return ExcCodes(int(result)) if isinstance(result, ExceptionCode) else result

    async def async_setValues(  # noqa: N802 (pymodbus API)
        self, device_id: int, func_code: int, address: int, values: Sequence[int]
    ) -> ExcCodes:
        """Every write is refused: the map is read-only."""
        if not self.image.has_unit(device_id):
            raise NoSuchIdException(f"unit id {device_id}")
        return ExcCodes.ILLEGAL_FUNCTION

    def device_ids(self) -> list[int]:
        """Served unit ids."""
        return sorted(self.image.units())


class _ClientConnection(ServerRequestHandler):
    """One client: admission, MBAP framing, and the answer to each request."""

    def __init__(self, owner: BridgeTcpServer) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]
        self.bridge_server = owner
        self._buffer = bytearray()
        self._host = ""

    def callback_connected(self) -> None:
        """Admit or refuse the client (allow-list, max connections)."""
        super().callback_connected()
        peer = self.transport.get_extra_info("peername")
        host = self._host = str(peer[0]) if peer else ""
        listener = self.listener
        connections = len(listener.active_connections) if listener is not None else 1
        if not self.bridge_server.gate.admit(host, connections):
            self.close()
            return
        _enable_keepalive(self.transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        """Frame MBAP requests and answer each one, in order."""
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 6 and self.transport is not None:
            length = (buffer[4] << 8) | buffer[5]
            if buffer[2] or buffer[3] or not 2 <= length <= _MAX_MBAP_LENGTH:
                # not Modbus (protocol id ≠ 0) or an impossible length: no reply can be framed
                log.debug("modbus: MBAP header %s from %s", bytes(buffer[:6]).hex(" "), self._host)
                self.bridge_server.gate.drop(self._host, "not a Modbus TCP request")
                self.close()
                return
            end = 6 + length
            if len(buffer) < end:
                return
            reply = self.bridge_server.answer(
                (buffer[0] << 8) | buffer[1], buffer[6], bytes(buffer[7:end]), self.framer
            )
            del buffer[:end]
            cast(asyncio.Transport, self.transport).write(reply)


class BridgeTcpServer(ModbusTcpServer):
    """pymodbus TCP server answering from a ``RegisterImage``."""

    def __init__(self, image: RegisterImage, gate: ClientGate, host: str, port: int) -> None:
        context = ImageContext(image)
        super().__init__(context, address=(host, port))
        self.image_context = context
        self.image = image
        self.gate = gate
        self.requests = 0
        self.exceptions: Counter[int] = Counter()  # exception code → replies

    def callback_new_connection(self) -> _ClientConnection:
        """A protocol object for each accepted socket."""
        return _ClientConnection(self)

    def answer(self, transaction: int, unit: int, pdu: bytes, framer: FramerBase) -> bytes:
        """The complete reply ADU to one request PDU."""
        function = pdu[0]
        self.requests += 1
        code: int
        if not self.image.has_unit(unit):
            code = ExceptionCode.GATEWAY_NO_RESPONSE
        elif function not in _RESPONSES:
            code = ExceptionCode.ILLEGAL_FUNCTION
        elif len(pdu) != 5:
            code = ExceptionCode.ILLEGAL_VALUE
        else:
            address, count = _ADDRESS_COUNT.unpack_from(pdu, 1)
            if not 1 <= count <= MAX_READ_COUNT:
                code = ExceptionCode.ILLEGAL_VALUE
            else:
                result = self.image.read(unit, function, address, count)
                if not isinstance(result, ExceptionCode):
                    reply = _RESPONSES[function](
                        registers=result, dev_id=unit, transaction_id=transaction
                    )
                    return framer.buildFrame(reply)
                code = result
        self.exceptions[code] += 1
        error = ExceptionResponse(function & 0x7F, code, device_id=unit, transaction=transaction)
        return framer.buildFrame(error)


def _enable_keepalive(sock: socket.socket | None) -> None:
    """TCP keep-alive so that a vanished client (half-open socket) frees its slot in ~90 s."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except OSError:  # not a TCP socket (tests over other transports): nothing to tune
        pass


class ModbusTcpEndpoint:
    """Listening Modbus TCP endpoint serving a register image."""

    def __init__(self, image: RegisterImage, gate: ClientGate, host: str, port: int) -> None:
        self._image = image
        self._gate = gate
        self._host = host
        self._port = port
        self._server: BridgeTcpServer | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is None or self._server.transport is None:
            return self._port
        listener = cast(asyncio.Server, self._server.transport)
        return int(listener.sockets[0].getsockname()[1])

    def connections(self) -> int:
        """Number of open client connections."""
        return len(self._server.active_connections) if self._server is not None else 0

    def set_image(self, image: RegisterImage) -> None:
        """Answer from ``image`` from now on (reload; called by the update task)."""
        self._image = image
        if self._server is not None:
            self._server.image = image
            self._server.image_context.image = image

    def set_gate(self, gate: ClientGate) -> None:
        """Admit new clients with ``gate`` from now on."""
        self._gate = gate
        if self._server is not None:
            self._server.gate = gate

    def counters(self) -> tuple[int, dict[int, int]]:
        """Requests answered and exception replies by code, since start."""
        if self._server is None:
            return 0, {}
        return self._server.requests, dict(self._server.exceptions)

    async def start(self) -> None:
        """Bind and listen; raises OSError when the address cannot be bound."""
        server = BridgeTcpServer(self._image, self._gate, self._host, self._port)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus turns the bind OSError into this
            raise OSError(f"modbus: cannot listen on {self._host}:{self._port}") from exc
        self._server = server

    async def stop(self) -> None:
        """Stop listening and close every client connection."""
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()  # type: ignore[no-untyped-call]
        if isinstance(listener, asyncio.Server):
            await listener.wait_closed()
