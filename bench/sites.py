"""Site mappings for the benchmarks, built straight from the config dataclasses."""

from __future__ import annotations

from dataclasses import replace

from bridge.config.modbus_map import STATUS_WORDS
from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    MeterConfig,
    ModbusSettings,
    OpcUaSettings,
    PollGroup,
    SerialSettings,
    SiteMapping,
    StatusSettings,
    TagConfig,
)
from bridge.config.templates import builtin_templates, template_for_model

MODEL = "105"
#: registers of the 1-phase template, in the order the benchmarks take them
REGISTERS_1PHASE = (
    "voltage",
    "current",
    "power_active",
    "energy_active_import_total",
    "frequency",
    "energy_active_import_t1",
    "energy_active_import_t2",
    "energy_active_import_t3",
    "energy_active_import_t4",
    "power_reactive",
    "power_apparent",
    "power_factor",
    "tariff_current",
    "battery_voltage",
    "energy_reactive_import_total",
    "clock",
    "model",
    "firmware",
    "serial_number",
    "relay_state",
)


def imei(index: int) -> str:
    """A 15-digit IMEI for simulated module ``index``."""
    return f"35{index:013d}"


def modbus_fits_flat(meters: int, tags: int) -> bool:
    """Whether a flat Modbus layout holds every meter's status block and float32 tags (65,536 words)."""
    return meters * (STATUS_WORDS + 2 * tags) <= 65_000


def flat_modbus(meters: int, port: int) -> ModbusSettings:
    """Flat layout: status blocks from 0, data right after them (one unit id, as large sites need)."""
    return ModbusSettings(
        host="127.0.0.1", port=port, layout="flat", status_address=0, data_address=meters * STATUS_WORDS
    )


def dial_in_site(
    modules: int,
    registers: tuple[str, ...],
    interval: float,
    opcua_port: int,
    modbus_port: int,
    *,
    response_timeout: float = 3.0,
    max_unidentified: int | None = None,
) -> SiteMapping:
    """``modules`` dial-in channels (one meter each) on one IMEI listener, one poll group."""
    listener = ListenerConfig(
        "gsm", host="127.0.0.1", port=0, method=IdentifyMethod.IMEI, identify_timeout=15.0,
        max_connections=modules + 100,
    )  # fmt: skip
    if max_unidentified is not None:  # None: the listener's default
        listener = replace(listener, max_unidentified=max_unidentified)
    channels = tuple(
        ChannelConfig(
            f"c{i}",
            ChannelKind.DIAL_IN,
            dial_in=DialInSettings("gsm", imei(i)),
            response_timeout=response_timeout,
            retries=1,
            frame_gap=0.0,
        )  # fmt: skip
        for i in range(modules)
    )
    meters = tuple(MeterConfig(f"m{i}", f"c{i}", MODEL, template_for_model(MODEL), 1) for i in range(modules))
    group = PollGroup("cycle", tuple(m.name for m in meters), registers, interval=interval)
    modbus = flat_modbus(modules, modbus_port)
    if not modbus_fits_flat(modules, len(registers)):
        modbus = replace(modbus, enabled=False)
    return SiteMapping(
        source="<bench dial-in>",
        templates=builtin_templates(),
        listeners=(listener,),
        channels=channels,
        meters=meters,
        poll_groups=(group,),
        tags=tuple(TagConfig(r, m.name, r) for m in meters for r in registers),
        opcua=OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/milur-bridge"),
        modbus=modbus,
        status=StatusSettings(enabled=False),
    )


def serial_site(meters: int, tags: int, opcua_port: int, modbus_port: int, per_bus: int = 32) -> SiteMapping:
    """``meters`` meters × ``tags`` tags on serial buses of ``per_bus`` meters (never opened: no polls)."""
    registers = REGISTERS_1PHASE[:tags]
    buses = (meters + per_bus - 1) // per_bus
    channels = tuple(
        ChannelConfig(f"bus{b}", ChannelKind.SERIAL, serial=SerialSettings(f"/dev/null-bench{b}"))
        for b in range(buses)
    )
    mets = tuple(
        MeterConfig(f"m{i}", f"bus{i // per_bus}", MODEL, template_for_model(MODEL), i % per_bus + 1)
        for i in range(meters)
    )
    return SiteMapping(
        source="<bench start-up>",
        templates=builtin_templates(),
        listeners=(),
        channels=channels,
        meters=mets,
        poll_groups=(),
        tags=tuple(TagConfig(r, m.name, r) for m in mets for r in registers),
        opcua=OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/milur-bridge"),
        modbus=flat_modbus(meters, modbus_port),
        status=StatusSettings(enabled=False),
    )
