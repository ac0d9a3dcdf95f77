"""Fixtures for the storage tests: a small hand-built site mapping and an open store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    ExportSettings,
    MeasuringPoint,
    MeterConfig,
    PollGroup,
    RegisterDef,
    RegisterFormat,
    SerialSettings,
    SiteMapping,
    TagConfig,
    Template,
)
from bridge.storage import SqliteReadingStore


def _reg(name: str, number: int, energy: bool = False) -> RegisterDef:
    fmt = RegisterFormat.BCD32 if energy else RegisterFormat.U24
    return RegisterDef(name, number, fmt, 0.01 if energy else 0.001, energy=energy)


TEMPLATE = Template(
    name="milur-3phase",
    models=("305", "307"),
    registers={
        r.name: r
        for r in (
            _reg("voltage_a", 100),
            _reg("current_a", 103),
            _reg("energy_active_import_total", 118, energy=True),
            _reg("energy_active_export_total", 149, energy=True),
            _reg("energy_reactive_import_total", 127, energy=True),
            _reg("energy_reactive_export_total", 158, energy=True),
        )
    },
)


def build_mapping(export: ExportSettings | None = None) -> SiteMapping:
    """Two meters: m1 with A+/A-/R+ energy tags and voltage, m2 with A+ only."""
    tags = (
        TagConfig("ap", "m1", "energy_active_import_total"),
        TagConfig("am", "m1", "energy_active_export_total"),
        TagConfig("rp", "m1", "energy_reactive_import_total", store=True),
        TagConfig("u", "m1", "voltage_a"),  # not energy: not stored by default
        TagConfig("i", "m1", "current_a"),  # stored: its poll group says so
        TagConfig("ap", "m2", "energy_active_import_total", store=False),  # explicitly off
        TagConfig("u", "m2", "voltage_a", store=True),  # explicitly on
    )
    return SiteMapping(
        source="test.xml",
        templates={TEMPLATE.name: TEMPLATE},
        listeners=(),
        channels=(ChannelConfig("bus", ChannelKind.SERIAL, serial=SerialSettings("/dev/null")),),
        meters=(
            MeterConfig("m1", "bus", "305", TEMPLATE.name, 1, description="Ввод 1"),
            MeterConfig("m2", "bus", "305", TEMPLATE.name, 2),
        ),
        poll_groups=(
            PollGroup("fast", ("m1",), ("current_a",), interval=1.0, store=True),
            PollGroup("energy", ("m1", "m2"), ("energy_active_import_total",), interval=60.0),
        ),
        tags=tags,
        export=export
        or ExportSettings(
            sender_inn="7700000001",
            sender_name="ООО «Тест»",
            area_inn="7700000002",
            area_name="Площадка №1",
            timezone="Europe/Moscow",
            points={"m1": MeasuringPoint("770000000000101", "ТП-1, ввод 1")},
        ),
    )


@pytest.fixture
def mapping() -> SiteMapping:
    return build_mapping()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReadingStore]:
    s = SqliteReadingStore(tmp_path / "data" / "readings.sqlite3")
    await s.open()
    try:
        yield s
    finally:
        await s.close()
