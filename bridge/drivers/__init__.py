"""Meter drivers on top of a Link (docs/architecture.md, "Link and driver").

``from bridge.drivers import Link, MilurDriver`` imports the Milur codec; the registry imports
drivers lazily by name.
"""

from bridge.drivers.errors import (
    AuthenticationFailed,
    BadValue,
    CorruptReply,
    DriverError,
    LinkDown,
    MeterErrorReply,
    ResponseTimeout,
    SessionRefused,
)
from bridge.drivers.link import Link, LinkStats
from bridge.drivers.milur import MeterIdentity, MilurDriver, RegisterReading

__all__ = [
    "AuthenticationFailed",
    "BadValue",
    "CorruptReply",
    "DriverError",
    "Link",
    "LinkDown",
    "LinkStats",
    "MeterErrorReply",
    "MeterIdentity",
    "MilurDriver",
    "RegisterReading",
    "ResponseTimeout",
    "SessionRefused",
]
