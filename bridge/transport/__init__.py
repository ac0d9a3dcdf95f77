"""Byte pipes to meters: serial RS-485, TCP client and dial-in GSM connections.

A transport knows nothing about Milur frames (docs/architecture.md, "Transport").
"""

from bridge.transport.base import Transport
from bridge.transport.errors import (
    ReadTimeout,
    TransportClosed,
    TransportError,
    TransportUnavailable,
)

__all__ = [
    "ReadTimeout",
    "Transport",
    "TransportClosed",
    "TransportError",
    "TransportUnavailable",
]
