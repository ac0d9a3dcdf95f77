"""Golden frames of protocol notes §9, written from the rules of §2–§5, §7.

Each exchange pairs the request as built by the codec's builders with the hex of §9, and the reply
object we expect with the reply hex of §9. The tests check the CRCs independently, encode the
requests and replies, and decode the bytes in every way the wire can deliver them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config.model import RegisterFormat
from bridge.protocol.milur import (
    BROADCAST,
    Address,
    ErrorCode,
    ErrorReply,
    Func,
    IdentifyReply,
    ReadReply,
    Reply,
    Request,
    SessionReply,
    identify_request,
    open_session_request,
    read_request,
)

ADDR = Address(255, 1)  # default 1-byte address FF (§2)
ADDR4 = Address(49932, 4)  # serial …049932 → 0C C3 00 00 (§2)
DEFAULT_PASSWORD = b"\xff" * 6  # factory password (§3)
IMEI = "356938035643809"  # a made-up 15-digit IMEI for the C3 reply (§7)


def h(text: str) -> bytes:
    """Bytes from spaced hex as written in §9."""
    return bytes.fromhex(text)


@dataclass(frozen=True)
class Exchange:
    """One row of §9."""

    name: str
    request: Request
    request_hex: str
    reply: Reply
    reply_hex: str
    fmt: RegisterFormat | None = None  # register value format, for read replies
    value: object = None  # raw decoded value
    engineering: float | None = None  # value × the §6 scale

    @property
    def request_bytes(self) -> bytes:
        """The request frame."""
        return h(self.request_hex)

    @property
    def reply_bytes(self) -> bytes:
        """The reply frame."""
        return h(self.reply_hex)


# The 26-byte C3 reply: FF FF FF FF C3, 4 bytes we do not know the meaning of, the IMEI at bytes
# 9..23, CRC. Its CRC was computed with an independent bitwise CRC-16/MODBUS (tests/protocol/test_crc.py).
IDENTIFY_REPLY_HEX = "FF FF FF FF C3 0C 01 00 00 " + " ".join(f"{b:02X}" for b in IMEI.encode()) + " F3 55"

EXCHANGES: tuple[Exchange, ...] = (
    Exchange(
        "open session, level 1, default password",
        open_session_request(ADDR, 1, DEFAULT_PASSWORD),
        "FF 08 01 FF FF FF FF FF FF 5F ED",
        SessionReply(ADDR, 1),
        "FF 08 01 87 F0",
    ),
    Exchange(
        "reg 102 u24 voltage",
        read_request(ADDR, 102),
        "FF 01 66 C0 4A",
        ReadReply(ADDR, 102, h("6F 94 03")),
        "FF 01 66 03 6F 94 03 03 4E",
        RegisterFormat.U24,
        234607,
        234.607,
    ),
    Exchange(
        "reg 105 s24 current",
        read_request(ADDR, 105),
        "FF 01 69 80 4E",
        ReadReply(ADDR, 105, h("F0 D8 FF")),
        "FF 01 69 03 F0 D8 FF 53 E0",
        RegisterFormat.S24,
        -10000,
        -10.0,
    ),
    Exchange(
        "reg 118 BCD32 energy",
        read_request(ADDR, 118),
        "FF 01 76 C1 86",
        ReadReply(ADDR, 118, h("44 11 10 00")),
        "FF 01 76 04 44 11 10 00 AC 6C",
        RegisterFormat.BCD32,
        11144,
        111.44,
    ),
    Exchange(
        "reg 9 u16 frequency",
        read_request(ADDR, 9),
        "FF 01 09 80 66",
        ReadReply(ADDR, 9, h("A0 C3")),
        "FF 01 09 02 A0 C3 B3 D9",
        RegisterFormat.U16,
        50080,
        50.08,
    ),
    Exchange(
        "error 08 session closed",
        read_request(ADDR, 102),
        "FF 01 66 C0 4A",
        ErrorReply(ADDR, Func.READ, ErrorCode.SESSION_CLOSED),
        "FF 81 08 00 67 D8",
    ),
    Exchange(
        "error 07 EEPROM access error",
        read_request(ADDR, 102),
        "FF 01 66 C0 4A",
        ErrorReply(ADDR, Func.READ, ErrorCode.EEPROM_ERROR),
        "FF 81 07 00 62 28",
    ),
    Exchange(
        "4-byte address, open session",
        open_session_request(ADDR4, 1, DEFAULT_PASSWORD),
        "0C C3 00 00 08 01 FF FF FF FF FF FF 97 BC",
        SessionReply(ADDR4, 1),
        "0C C3 00 00 08 01 82 C6",
    ),
    Exchange(
        "4-byte address, A+ energy",
        read_request(ADDR4, 118),
        "0C C3 00 00 01 76 C4 B0",
        ReadReply(ADDR4, 118, h("44 11 10 00")),
        "0C C3 00 00 01 76 04 44 11 10 00 6F E4",
        RegisterFormat.BCD32,
        11144,
        111.44,
    ),
    Exchange(
        "GSM terminal identification",
        identify_request(),
        "FF FF FF FF C3 0C 01 10 FC",
        IdentifyReply(BROADCAST, IMEI, h("0C 01 00 00")),
        IDENTIFY_REPLY_HEX,
    ),
)

#: close session request of §3
CLOSE_SESSION_HEX = "FF 09 01 86 60"
