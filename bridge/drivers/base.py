"""``MeterDriver``: what polling needs from a meter driver (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bridge.config.model import MeterConfig, Template
    from bridge.drivers.link import Link
    from bridge.drivers.milur import MeterIdentity, RegisterReading


@runtime_checkable
class MeterDriver(Protocol):
    """One meter's protocol logic on top of a ``Link``; built as ``cls(meter, template)``."""

    meter: MeterConfig

    @property
    def auth_failed(self) -> bool:
        """True after a rejected password, until ``reset_auth()``."""

    def reset_auth(self) -> None:
        """Allow session attempts again."""

    async def read_registers(self, link: Link, names: Iterable[str]) -> dict[str, RegisterReading]:
        """Read registers by name."""

    async def identify(self, link: Link) -> MeterIdentity:
        """Model, firmware and serial number."""

    async def close_session(self, link: Link) -> None:
        """Close the session if one is open."""


class MeterDriverClass(Protocol):
    """A driver class: called with the meter's configuration and its template."""

    def __call__(self, meter: MeterConfig, template: Template) -> MeterDriver:
        """Build a driver for one meter."""
