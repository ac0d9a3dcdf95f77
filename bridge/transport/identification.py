"""Identification of a dial-in connection: IMEI handshake, serial number or peer address (§7).

Used by ``DialInListener`` under its ``identify_timeout`` (the caller bounds every wait here).
"""

from __future__ import annotations

import asyncio

from bridge.config.model import IdentifyMethod, ListenerConfig, RegisterFormat, Secret
from bridge.protocol.milur.codec import FrameDecoder
from bridge.protocol.milur.errors import ValueDecodeError
from bridge.protocol.milur.frames import (
    Address,
    ErrorReply,
    IdentifyReply,
    ReadReply,
    Reply,
    Request,
    SessionReply,
    identify_request,
    open_session_request,
    read_request,
)
from bridge.protocol.milur.values import decode_value
from bridge.transport.errors import ReadTimeout
from bridge.transport.stream import ByteConnection

SERIAL_NUMBER_REGISTER = 68
#: identification requests sent within ``identify_timeout`` (IMEI and serial-number methods), in
#: case the module was not listening yet when the first one came
IDENTIFY_ATTEMPTS = 3


class IdentificationRefused(Exception):
    """The module or meter answered the identification with a refusal: do not ask again."""


async def identify_connection(
    conn: ByteConnection,
    config: ListenerConfig,
    *,
    password: Secret | None = None,
    level: int = 1,
) -> str:
    """The identity of ``conn`` by ``config.method``; waits until it is known (bound it).

    Raises ``IdentificationRefused`` on an error reply, ``TransportError`` if the peer goes away.
    """
    if config.method is IdentifyMethod.PEER_ADDRESS:
        return conn.peer_host
    slice_ = max(config.identify_timeout / IDENTIFY_ATTEMPTS, 0.05)
    if config.method is IdentifyMethod.IMEI:
        request = identify_request()
    else:
        address = Address(config.identify_address, config.identify_address_width)
        request = read_request(address, SERIAL_NUMBER_REGISTER)
        if password is not None:
            await _open_session(conn, address, level, password, slice_)
    while True:
        reply = await _exchange(conn, request, slice_)
        if isinstance(reply, IdentifyReply):
            return reply.imei.strip()
        if isinstance(reply, ReadReply):
            try:
                return str(decode_value(RegisterFormat.ASCII, reply.value)).strip()
            except ValueDecodeError:
                pass
        if isinstance(reply, ErrorReply):
            raise IdentificationRefused(f"error {reply.code:02X} ({reply.meaning})")


async def _open_session(
    conn: ByteConnection, address: Address, level: int, password: Secret, limit: float
) -> None:
    """Open a session before reading reg 68, for meters that want one. A refusal is final."""
    request = open_session_request(address, level, password.reveal())
    while True:  # a pure timeout is retried (bounded by the caller), a refusal is not (§3)
        reply = await _exchange(conn, request, limit)
        if isinstance(reply, SessionReply):
            return
        if isinstance(reply, ErrorReply):
            raise IdentificationRefused(f"session refused: error {reply.code:02X} ({reply.meaning})")


async def _exchange(conn: ByteConnection, request: Request, limit: float) -> Reply | None:
    """Send one request; its reply, or None if nothing came within ``limit``."""
    decoder = FrameDecoder()
    decoder.expect(request)
    conn.discard_input()
    await conn.write(request.encode())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (reply := decoder.next_frame()) is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        try:
            decoder.feed(await conn.read(remaining))
        except ReadTimeout:
            return None
    return reply
