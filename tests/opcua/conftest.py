"""Fixtures for the OPC UA publisher tests: a small site mapping built directly from the model."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from asyncua import Client

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    OpcUaSettings,
    RegisterDef,
    RegisterFormat,
    SerialSettings,
    SiteMapping,
    TagConfig,
    Template,
)
from bridge.publishers.opcua import OpcUaPublisher
from bridge.tags import TagStore
from bridge.tags.keys import CHANNEL_DIAG_FIELDS, METER_DIAG_FIELDS, channel_diag_key, meter_diag_key

REGISTERS = {
    "voltage_a": RegisterDef("voltage_a", 100, RegisterFormat.U24, 0.001, "V", "Phase A voltage"),
    "current_a": RegisterDef("current_a", 103, RegisterFormat.U24, 0.001, "A", "Phase A current"),
    "power_reactive": RegisterDef("power_reactive", 109, RegisterFormat.S32, 1.0, "var", "Reactive power"),
    "frequency": RegisterDef("frequency", 9, RegisterFormat.U16, 0.01, "Hz", "Frequency"),
    "energy_a": RegisterDef("energy_a", 118, RegisterFormat.BCD32, 0.01, "kWh", "Active energy", energy=True),
    "energy_r": RegisterDef(
        "energy_r", 120, RegisterFormat.BCD32, 0.01, "kvarh", "Reactive energy", energy=True
    ),
    "serial": RegisterDef("serial", 68, RegisterFormat.ASCII, 1.0, "", "Serial number"),
}
TEMPLATE = Template("milur-test", ("307",), REGISTERS)


def make_mapping(
    meters: int = 2,
    channels: int = 2,
    registers: tuple[str, ...] = tuple(REGISTERS),
    opcua: OpcUaSettings | None = None,
    group: str = "",
) -> SiteMapping:
    """``channels`` channels, ``meters`` meters on each, one tag per register."""
    chans = tuple(
        ChannelConfig(f"bus{c}", ChannelKind.SERIAL, serial=SerialSettings(f"/dev/ttyS{c}"), group=group)
        for c in range(1, channels + 1)
    )
    mets = tuple(
        MeterConfig(f"m{c}_{i}", ch.name, "307", "milur-test", i)
        for c, ch in enumerate(chans, 1)
        for i in range(1, meters + 1)
    )
    tags = tuple(TagConfig(r, m.name, r) for m in mets for r in registers)
    return SiteMapping(
        source="<test>",
        templates={"milur-test": TEMPLATE},
        listeners=(),
        channels=chans,
        meters=mets,
        poll_groups=(),
        tags=tags,
        opcua=opcua or OpcUaSettings(),
    )


def define_all(store: TagStore, mapping: SiteMapping) -> None:
    """Define every key of the mapping the way polling does."""
    keys = [t.key for t in mapping.tags]
    for m in mapping.meters:
        keys += [meter_diag_key(m.name, f) for f in METER_DIAG_FIELDS]
    for c in mapping.channels:
        keys += [channel_diag_key(c.name, f) for f in CHANNEL_DIAG_FIELDS]
    store.define(keys)


def settings(endpoint: str, **kw: object) -> OpcUaSettings:
    """OpcUaSettings for a test endpoint."""
    return dataclasses.replace(OpcUaSettings(endpoint=endpoint), **kw)  # type: ignore[arg-type]


def read_time(second: int = 0) -> datetime:
    """A fixed meter read time (whole milliseconds survive OPC UA's 100 ns ticks)."""
    return datetime(2026, 11, 23, 12, 0, second, 123000, tzinfo=UTC)


@pytest.fixture
def endpoint(free_port: Callable[[], int]) -> str:
    return f"opc.tcp://127.0.0.1:{free_port()}/milur-bridge"


@pytest.fixture
async def running(endpoint: str) -> AsyncIterator[tuple[OpcUaPublisher, TagStore, SiteMapping]]:
    """A started publisher (None security, anonymous) over a 2×2 meter mapping."""
    mapping = make_mapping(opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        yield pub, store, mapping
    finally:
        await pub.stop()


@pytest.fixture
async def client(endpoint: str, running: object) -> AsyncIterator[Client]:
    c = Client(endpoint, timeout=5)
    async with c:
        yield c


@pytest.fixture
async def executor_closed() -> AsyncIterator[None]:
    """Shut the loop's default executor at the end of a test.

    asyncua's ``Server.init()`` runs work in the loop's default executor, whose idle worker thread
    lives until the loop closes; this test's loop ends with the test, so close it here, before
    ``no_leftovers`` looks for threads (list this fixture after ``no_leftovers``).
    """
    yield
    await asyncio.get_running_loop().shutdown_default_executor()
