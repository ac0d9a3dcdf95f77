"""Tag values and their quality, named after OPC UA status codes (DESIGN.md rule 4)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

Scalar = float | int | str | bool | None


class Quality(enum.Enum):
    """Quality of a tag value; each member's value is its OPC UA StatusCode.

    The Modbus side shows the same quality as a small code (``modbus_code``) in the per-meter
    status registers, so both publishers tell the same truth.
    """

    Good = 0x00000000
    Uncertain_LastUsableValue = 0x40900000
    Bad_CommunicationError = 0x80050000
    Bad_NotConnected = 0x808A0000
    Bad_WaitingForInitialData = 0x80320000
    Bad_ConfigurationError = 0x80890000

    @property
    def status_code(self) -> int:
        """The OPC UA StatusCode value."""
        return int(self.value)

    @property
    def is_good(self) -> bool:
        """True for Good."""
        return self is Quality.Good

    @property
    def is_bad(self) -> bool:
        """True for any Bad_* quality."""
        return self.value & 0x80000000 != 0

    @property
    def modbus_code(self) -> int:
        """Small integer shown in Modbus status registers (documented in docs/modbus.md)."""
        return _MODBUS_CODES[self]


_MODBUS_CODES = {
    Quality.Good: 0,
    Quality.Uncertain_LastUsableValue: 1,
    Quality.Bad_CommunicationError: 2,
    Quality.Bad_NotConnected: 3,
    Quality.Bad_WaitingForInitialData: 4,
    Quality.Bad_ConfigurationError: 5,
}


@dataclass(frozen=True, slots=True)
class TagValue:
    """One value of a tag.

    ``source_time`` is when the meter was read (None if never); ``server_time`` is when the bridge
    last changed this entry. Both are timezone-aware UTC datetimes.
    """

    value: Scalar
    quality: Quality
    source_time: datetime | None
    server_time: datetime


@dataclass(frozen=True, slots=True)
class TagChange:
    """A tag's new value, as delivered to listeners."""

    key: str
    value: TagValue
