"""Builds small SiteMappings for polling tests straight from the config dataclasses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    MeterConfig,
    PollGroup,
    SerialSettings,
    SiteMapping,
    TagConfig,
    TcpClientSettings,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.polling.collector import Collector
from bridge.tags import Quality, TagStore

#: short timings for tests: fast failure detection and reconnection
FAST = {"response_timeout": 0.3, "retries": 0, "reconnect_min": 0.05, "reconnect_max": 0.2}


def serial_channel(name: str, port: str, baudrate: int = 9600, **kw: object) -> ChannelConfig:
    opts = {**FAST, "frame_gap": 0.005, **kw}
    return ChannelConfig(
        name, ChannelKind.SERIAL, serial=SerialSettings(port, baudrate=baudrate), **opts  # type: ignore[arg-type]
    )


def tcp_channel(name: str, port: int, **kw: object) -> ChannelConfig:
    opts = {**FAST, "frame_gap": 0.001, **kw}
    tcp = TcpClientSettings("127.0.0.1", port, connect_timeout=1.0)
    return ChannelConfig(name, ChannelKind.TCP_CLIENT, tcp=tcp, **opts)  # type: ignore[arg-type]


def dial_in_channel(name: str, listener: str, imei: str, **kw: object) -> ChannelConfig:
    opts = {**FAST, "frame_gap": 0.001, **kw}
    return ChannelConfig(
        name, ChannelKind.DIAL_IN, dial_in=DialInSettings(listener, imei), **opts  # type: ignore[arg-type]
    )


def listener(name: str = "gsm", identify_timeout: float = 2.0) -> ListenerConfig:
    return ListenerConfig(
        name, host="127.0.0.1", port=0, method=IdentifyMethod.IMEI, identify_timeout=identify_timeout
    )


def meter(name: str, channel: str, address: int, model: str = "105", **kw: object) -> MeterConfig:
    return MeterConfig(name, channel, model, template_for_model(model), address, **kw)  # type: ignore[arg-type]


def group(name: str, meters: Sequence[str], registers: Sequence[str], interval: float = 0.3) -> PollGroup:
    return PollGroup(name, tuple(meters), tuple(registers), interval=interval)


def site(
    channels: Sequence[ChannelConfig],
    meters: Sequence[MeterConfig],
    registers: Sequence[str] = ("voltage",),
    interval: float = 0.3,
    *,
    groups: Sequence[PollGroup] | None = None,
    extra_tags: Iterable[TagConfig] = (),
    listeners: Sequence[ListenerConfig] = (),
) -> SiteMapping:
    """Poll groups (default: one over every meter) and a tag per register of each polled meter."""
    if groups is None:
        groups = [group("fast", [m.name for m in meters], registers, interval)]
    tags = [TagConfig(r, m, r) for g in groups for m in g.meters for r in g.registers]
    return SiteMapping(
        source="<test>",
        templates=builtin_templates(),
        listeners=tuple(listeners),
        channels=tuple(channels),
        meters=tuple(meters),
        poll_groups=tuple(groups),
        tags=tuple(tags) + tuple(extra_tags),
    )


@contextlib.asynccontextmanager
async def running(mapping: SiteMapping, **kw: Any) -> AsyncIterator[tuple[Collector, TagStore]]:
    """A started Collector on a fresh TagStore; stopped on exit."""
    store = TagStore()
    collector = Collector(mapping, store, **kw)
    await collector.start()
    try:
        yield collector, store
    finally:
        await collector.stop()


def quality(store: TagStore, key: str) -> Quality | None:
    tv = store.get(key)
    return None if tv is None else tv.quality


def value(store: TagStore, key: str) -> object:
    tv = store.get(key)
    return None if tv is None else tv.value
