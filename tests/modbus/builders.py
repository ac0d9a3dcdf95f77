"""Builders for Modbus tests: site mappings made directly from the typed model, a running publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    ModbusPoint,
    ModbusSettings,
    Origin,
    SerialSettings,
    SiteMapping,
    TagConfig,
)
from bridge.config.templates import builtin_templates
from bridge.publishers.modbus import ModbusPublisher
from bridge.tags.store import TagStore

SOURCE = "site.xml"


def meter(name: str, model: str = "307", unit_id: int | None = None, line: int = 10) -> MeterConfig:
    template = "milur-3phase" if model in ("305", "307") else "milur-1phase"
    return MeterConfig(
        name=name,
        channel="bus1",
        model=model,
        template=template,
        address=len(name),
        modbus_unit_id=unit_id,
        origin=Origin(SOURCE, line),
    )


def tag(
    meter_name: str,
    name: str,
    register: str | None = None,
    point: ModbusPoint | None = None,
    line: int = 100,
    **kwargs: object,
) -> TagConfig:
    return TagConfig(
        name=name,
        meter=meter_name,
        register=register or name,
        modbus=point,
        origin=Origin(SOURCE, line),
        **kwargs,  # type: ignore[arg-type]
    )


def site(
    meters: Iterable[MeterConfig],
    tags: Iterable[TagConfig],
    modbus: ModbusSettings | None = None,
) -> SiteMapping:
    return SiteMapping(
        source=SOURCE,
        templates=builtin_templates(),
        listeners=(),
        channels=(ChannelConfig("bus1", ChannelKind.SERIAL, serial=SerialSettings("/dev/null")),),
        meters=tuple(meters),
        poll_groups=(),
        tags=tuple(tags),
        modbus=modbus or ModbusSettings(origin=Origin(SOURCE, 5)),
    )


def settings(**kwargs: object) -> ModbusSettings:
    """Test settings: loopback, a free port (0), section origin line 5."""
    base = ModbusSettings(host="127.0.0.1", port=0, origin=Origin(SOURCE, 5))
    return replace(base, **kwargs)  # type: ignore[arg-type]


def now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def serving(mapping: SiteMapping, store: TagStore) -> AsyncIterator[ModbusPublisher]:
    publisher = ModbusPublisher(mapping, store)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()
