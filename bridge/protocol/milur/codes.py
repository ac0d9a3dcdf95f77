"""Addresses and codes of the Milur protocol (protocol notes §2, §4): the vocabulary of frames."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.config.model import AddressWidth
from bridge.protocol.milur.errors import CodecUsageError

#: Set in the function byte of an error reply (protocol notes §4).
ERROR_FLAG = 0x80


def check_u8(what: str, value: int) -> int:
    """``value`` if it fits in a byte, else ``CodecUsageError``."""
    if not 0 <= value <= 0xFF:
        raise CodecUsageError(f"{what} must be 0..255, got {value}")
    return value


def check_u16(what: str, value: int) -> int:
    """``value`` if it fits in 16 bits, else ``CodecUsageError``."""
    if not 0 <= value <= 0xFFFF:
        raise CodecUsageError(f"{what} must be 0..65535, got {value}")
    return value


# --------------------------------------------------------------------------- addresses
@dataclass(frozen=True, slots=True)
class Address:
    """A meter address on the wire: 1 byte, or 4 bytes little-endian (protocol notes §2)."""

    value: int
    width: int = 1

    def __post_init__(self) -> None:
        if self.width not in (1, 4):
            raise CodecUsageError(f"address width must be 1 or 4, got {self.width}")
        if not 0 <= self.value < 1 << (8 * self.width):
            raise CodecUsageError(f"address {self.value} does not fit in {self.width} byte(s)")

    @classmethod
    def for_meter(cls, value: int, width_setting: AddressWidth | int | str = "auto") -> Address:
        """The wire address of a meter: ``auto`` takes 1 byte up to 255, else 4 ([open] §2)."""
        setting = width_setting.value if isinstance(width_setting, AddressWidth) else width_setting
        if str(setting) == "auto":
            return cls(value, 1 if value <= 0xFF else 4)
        if str(setting) in ("1", "4"):
            return cls(value, int(setting))
        raise CodecUsageError(f"address width setting must be auto, 1 or 4, got {setting!r}")

    def encode(self) -> bytes:
        """The address bytes (little-endian for 4 bytes)."""
        return self.value.to_bytes(self.width, "little")

    def __str__(self) -> str:
        return f"{self.value}/{self.width}"


#: ``FF FF FF FF``: read network address (FUNC 0F) and GSM identification (FUNC C3), §2/§7.
BROADCAST = Address(0xFFFFFFFF, 4)


# --------------------------------------------------------------------------- codes
class Func(enum.IntEnum):
    """Function codes (protocol notes §4)."""

    READ = 0x01
    WRITE = 0x02
    JOURNAL_COUNT = 0x06
    OPEN_SESSION = 0x08
    CLOSE_SESSION = 0x09
    JOURNAL_RECORD = 0x0B
    DAILY_RECORD = 0x0C
    PROFILE_RECORD = 0x0D
    NETWORK_ADDRESS = 0x0F
    ARCHIVE_SEARCH = 0x10
    IDENTIFY = 0xC3


#: meaning of each error code (§4)
ERROR_MEANINGS = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "device failure",
    0x05: "acknowledge",
    0x06: "busy",
    0x07: "EEPROM access error",
    0x08: "session closed (reopen)",
    0x09: "access denied",
    0x0A: "CRC error",
    0x0B: "frame incorrect",
    0x0C: "calibration jumper absent",
    0x0D: "password incorrect",
}


class ErrorCode(enum.IntEnum):
    """Error codes of error replies (protocol notes §4)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    BUSY = 0x06
    EEPROM_ERROR = 0x07
    SESSION_CLOSED = 0x08
    ACCESS_DENIED = 0x09
    CRC_ERROR = 0x0A
    FRAME_INCORRECT = 0x0B
    CALIBRATION_JUMPER_ABSENT = 0x0C
    PASSWORD_INCORRECT = 0x0D

    @property
    def meaning(self) -> str:
        """Human-readable meaning."""
        return ERROR_MEANINGS[self.value]


class ArchiveSearchStatus(enum.IntEnum):
    """STATUS of a FUNC 10 reply (protocol notes §4, [one source])."""

    ACCEPTED = 1  # ask again in about 2 s
    SEARCHING = 2
    EARLIER_FOUND = 3
    LATER_FOUND = 4
    OUT_OF_RANGE = 5
    EMPTY = 6
    ERROR = 7
