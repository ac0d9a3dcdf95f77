"""The ``Transport`` protocol every channel implements (docs/architecture.md, "Transport")."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """A byte pipe to one bus. One user at a time (the channel's Link serialises access)."""

    name: str
    """Channel name."""
    peer: str
    """``host:port``, serial port path or URL; ``""`` when closed."""
    identity: str
    """Dial-in identity (IMEI, serial number or IP) once identified, else ``""``."""

    @property
    def is_open(self) -> bool:
        """True while bytes can be written and read."""

    async def open(self) -> None:
        """Open or connect; raises ``TransportUnavailable`` when that is not possible now."""

    async def close(self) -> None:
        """Close; safe to call more than once. ``open()`` may be called again afterwards."""

    async def write(self, data: bytes) -> None:
        """Send bytes; raises ``TransportClosed`` when the channel is not open or was lost."""

    async def read(self, timeout: float) -> bytes:  # noqa: ASYNC109 (contract)
        """At least one byte; raises ``ReadTimeout`` or ``TransportClosed``."""

    def discard_input(self) -> None:
        """Drop every byte received and not yet read."""
