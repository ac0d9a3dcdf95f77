"""Shared set-up for the archive tests: simulated meters behind a real TCP server, mappings."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config.model import (
    ArchiveSettings,
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    PollGroup,
    SiteMapping,
    TagConfig,
    TcpClientSettings,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.drivers.link import Link
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.transport.tcp_client import TcpClientTransport

#: archive settings for tests: quick searches, everything read
FAST_ARCHIVES = ArchiveSettings(enabled=True, search_retry=0.02, backfill_days=1, chunk=4)


def tcp_channel(name: str, port: int, **kw: object) -> ChannelConfig:
    opts: dict[str, object] = {
        "response_timeout": 0.5,
        "retries": 1,
        "frame_gap": 0.001,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        **kw,
    }
    tcp = TcpClientSettings("127.0.0.1", port, connect_timeout=2.0)
    return ChannelConfig(name, ChannelKind.TCP_CLIENT, tcp=tcp, **opts)  # type: ignore[arg-type]


def meter(name: str, channel: str, address: int, model: str = "107") -> MeterConfig:
    return MeterConfig(name, channel, model, template_for_model(model), address)


def site(
    channel: ChannelConfig,
    meters: Sequence[MeterConfig],
    archives: ArchiveSettings = FAST_ARCHIVES,
    interval: float = 0.1,
) -> SiteMapping:
    """One channel, a fast live poll group over every meter (voltage), and the archive settings."""
    names = tuple(m.name for m in meters)
    group = PollGroup("live", names, ("voltage",), interval=interval)
    return SiteMapping(
        source="<test>",
        templates=builtin_templates(),
        listeners=(),
        channels=(channel,),
        meters=tuple(meters),
        poll_groups=(group,),
        tags=tuple(TagConfig("voltage", n, "voltage") for n in names),
        archives=archives,
    )


def sim(address: int, model: str = "107", **kw: Any) -> SimulatedMeter:
    """A simulated meter with a short FUNC 10 search delay."""
    kw.setdefault("search_delay", 0.05)
    return SimulatedMeter(model, address, **kw)


class ShiftedClock:
    """The bridge's clock, moved forward together with the simulated meters (an outage in a test)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, meters: Sequence[SimulatedMeter], seconds: float) -> None:
        """Time passes for the bridge and for every meter."""
        self.offset += timedelta(seconds=seconds)
        for m in meters:
            m.advance(seconds)


@dataclasses.dataclass
class LinkRig:
    server: TcpMeterServer
    transport: TcpClientTransport
    link: Link
    channel: ChannelConfig


@contextlib.asynccontextmanager
async def link_rig(*meters: SimulatedMeter) -> AsyncIterator[LinkRig]:
    """A real TCP client link to a simulated bus."""
    async with TcpMeterServer(SimulatedBus(meters)) as server:
        channel = tcp_channel("ch", server.port)
        transport = TcpClientTransport(channel)
        await transport.open()
        try:
            yield LinkRig(server, transport, Link(transport, channel), channel)
        finally:
            await transport.close()
