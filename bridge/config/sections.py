"""The settings sections of a mapping → their settings dataclasses.

Sections: ``<opcua>``, ``<modbus>``, ``<status>``, ``<storage>``, ``<export>``, ``<simulator>``,
``<archives>``.

Absent attributes keep the dataclass defaults. Password hashes become ``Secret``s and are checked
for their form only (an argon2 hash made by ``milur-bridge hash-password``), never echoed.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.config.builder import Element, MappingBuilder
from bridge.config.checks import cron_problem
from bridge.config.model import (
    ArchiveSettings,
    ExportSettings,
    MeasuringPoint,
    ModbusSettings,
    ModbusTable,
    ModbusType,
    OpcUaSettings,
    OpcUaUser,
    Secret,
    SecurityPolicy,
    SimulatorSettings,
    StatusSettings,
    StorageSettings,
    WordOrder,
)

HASH_PREFIX = "$argon2"


def _hash(b: MappingBuilder, el: Element, what: str) -> Secret:
    text = (el.get("password-hash") or "").strip()
    if not text.startswith(HASH_PREFIX):
        b.error(
            el,
            f"{what}: password-hash must be an argon2 hash made by `milur-bridge hash-password` "
            "(never a plain password); the value is not shown",
        )
    return Secret(text.encode())


def opcua(b: MappingBuilder, el: Element) -> OpcUaSettings:
    """``<opcua>`` with its ``<user>`` children."""
    d = OpcUaSettings()
    users: list[OpcUaUser] = []
    for u in el.iterchildren("user"):
        name = u.get("name", "").strip()
        if any(x.name == name for x in users):
            b.error(u, f"OPC UA user {name!r} is declared twice")
        users.append(OpcUaUser(name, _hash(b, u, f"OPC UA user {name!r}")))
    security = d.security
    if el.get("security") is not None:
        security = tuple(SecurityPolicy(s) for s in el.get("security", "").split())
    settings = OpcUaSettings(
        enabled=b.flag(el, "enabled", d.enabled),
        endpoint=b.get(el, "endpoint", str, d.endpoint),
        server_name=el.get("server-name", d.server_name),
        application_uri=b.get(el, "application-uri", str, d.application_uri),
        namespace_uri=b.get(el, "namespace-uri", str, d.namespace_uri),
        security=security,
        allow_anonymous=b.flag(el, "allow-anonymous", d.allow_anonymous),
        users=tuple(users),
        pki_dir=b.path(el, "pki-dir", d.pki_dir),
        certificate=b.optional_path(el, "certificate"),
        private_key=b.optional_path(el, "private-key"),
        grouping=b.get(el, "grouping", str, d.grouping),
        diagnostics=b.get(el, "diagnostics", str, d.diagnostics),
        origin=b.origin(el),
    )
    if settings.enabled and not settings.allow_anonymous and not settings.users:
        b.error(el, 'opcua: allow-anonymous="false" needs at least one <user>, or nobody can connect')
    if (settings.certificate is None) != (settings.private_key is None):
        b.error(el, "opcua: give both certificate and private-key, or neither (then one is generated)")
    if not settings.endpoint.startswith("opc.tcp://"):
        b.error(el, f"opcua: endpoint {settings.endpoint!r} must start with opc.tcp://")
    return settings


def modbus(b: MappingBuilder, el: Element) -> ModbusSettings:
    """``<modbus>``."""
    d = ModbusSettings()
    return ModbusSettings(
        enabled=b.flag(el, "enabled", d.enabled),
        host=b.get(el, "host", str, d.host),
        port=b.get(el, "port", int, d.port),
        layout=b.get(el, "layout", str, d.layout),
        flat_unit_id=b.get(el, "flat-unit-id", int, d.flat_unit_id),
        table=b.get(el, "table", ModbusTable, d.table),
        data_type=b.get(el, "type", ModbusType, d.data_type),
        word_order=b.get(el, "word-order", WordOrder, d.word_order),
        status_address=b.get(el, "status-address", int, d.status_address),
        data_address=b.get(el, "data-address", int, d.data_address),
        bad_value_exception=b.flag(el, "bad-value-exception", d.bad_value_exception),
        allow=tuple(el.get("allow", "").split()),
        max_connections=b.get(el, "max-connections", int, d.max_connections),
        use_uvloop=b.flag(el, "uvloop", d.use_uvloop),
        origin=b.origin(el),
    )


def status(b: MappingBuilder, el: Element) -> StatusSettings:
    """``<status>``: username and password-hash go together."""
    d = StatusSettings()
    username = el.get("username")
    password_hash = None
    if el.get("password-hash") is not None:
        password_hash = _hash(b, el, "status")
    if (username is None) != (password_hash is None):
        b.error(el, "status: give both username and password-hash, or neither")
    return StatusSettings(
        enabled=b.flag(el, "enabled", d.enabled),
        host=b.get(el, "host", str, d.host),
        port=b.get(el, "port", int, d.port),
        username=username,
        password_hash=password_hash,
    )


def _optional_int(b: MappingBuilder, el: Element, attr: str) -> int | None:
    return b.get(el, attr, int, None)


def storage(b: MappingBuilder, el: Element) -> StorageSettings:
    """``<storage>``; a section without ``enabled`` is enabled."""
    d = StorageSettings()
    return StorageSettings(
        enabled=b.flag(el, "enabled", True),
        path=b.path(el, "path", d.path),
        retention_days=b.get(el, "retention-days", int, d.retention_days),
        retention_energy_days=_optional_int(b, el, "retention-energy-days"),
        retention_instant_days=_optional_int(b, el, "retention-instant-days"),
        retention_events_days=_optional_int(b, el, "retention-events-days"),
        batch_rows=b.get(el, "batch-rows", int, d.batch_rows),
        flush_interval=b.number(el, "flush-interval", d.flush_interval),
        prune_interval=b.number(el, "prune-interval", d.prune_interval),
        max_pending_rows=b.get(el, "max-pending-rows", int, d.max_pending_rows),
    )


def export(b: MappingBuilder, el: Element) -> ExportSettings:
    """``<export>`` with its ``<point meter= code= name=/>`` children."""
    d = ExportSettings()
    points: dict[str, MeasuringPoint] = {}
    for p in el.iterchildren("point"):
        meter = p.get("meter", "")
        if meter in points:
            b.error(p, f"export: meter {meter!r} has two measuring points")
        b.built.export_points.append((meter, b.origin(p)))
        points[meter] = MeasuringPoint(p.get("code", "").strip(), p.get("name", ""))
    return ExportSettings(
        sender_inn=b.get(el, "sender-inn", str, d.sender_inn),
        sender_name=el.get("sender-name", d.sender_name),
        area_inn=b.get(el, "area-inn", str, d.area_inn),
        area_name=el.get("area-name", d.area_name),
        timezone=b.get(el, "timezone", str, d.timezone),
        points=MappingProxyType(points),
        value_multiplier=b.number(el, "value-multiplier", d.value_multiplier),
        boundary_tolerance=b.number(el, "boundary-tolerance", d.boundary_tolerance),
    )


def simulator(b: MappingBuilder, el: Element) -> SimulatorSettings:
    """``<simulator>``; a section without ``enabled`` is enabled, and then needs a spec file."""
    settings = SimulatorSettings(enabled=b.flag(el, "enabled", True), spec=b.optional_path(el, "spec"))
    if settings.enabled and settings.spec is None:
        b.error(el, 'simulator: an enabled simulator needs spec="<file>"')
    elif settings.enabled and settings.spec is not None and not Path(settings.spec).is_file():
        b.error(el, f"simulator: spec file {el.get('spec', '')!r} does not exist (next to the mapping)")
    return settings


def archives(b: MappingBuilder, el: Element) -> ArchiveSettings:
    """``<archives>``; a section without ``enabled`` is enabled. Meter names are checked later."""
    d = ArchiveSettings()
    meters = tuple(el.get("meters", "").split())
    if "all" in meters:
        if len(meters) > 1:
            b.error(el, 'archives: meters="all" cannot be combined with names')
        meters = ()
    schedule = b.get(el, "schedule", str, d.schedule)
    if problem := cron_problem(schedule):
        b.error(el, f"archives schedule: {problem}")
    timezone = b.get(el, "timezone", str, d.timezone)
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            b.error(el, f"archives: unknown time zone {timezone!r} (an IANA name, e.g. Europe/Moscow)")
    daily_registers = tuple(el.get("daily-registers", "").split()) or d.daily_registers
    return ArchiveSettings(
        enabled=b.flag(el, "enabled", True),
        meters=meters,
        daily=b.flag(el, "daily", d.daily),
        profile=b.flag(el, "profile", d.profile),
        journal=b.flag(el, "journal", d.journal),
        schedule=schedule,
        backfill_days=b.get(el, "backfill-days", int, d.backfill_days),
        chunk=b.get(el, "chunk", int, d.chunk),
        search_retry=b.number(el, "search-retry", d.search_retry),
        search_timeout=b.number(el, "search-timeout", d.search_timeout),
        daily_registers=daily_registers,
        profile_scale=b.number(el, "profile-scale", d.profile_scale),
        power_journal=b.get(el, "power-journal", int, d.power_journal),
        timezone=timezone,
        clock_interval=b.number(el, "clock-interval", d.clock_interval),
        clock_correction=b.flag(el, "clock-correction", d.clock_correction),
        clock_threshold=b.number(el, "clock-threshold", d.clock_threshold),
        clock_max_step=b.number(el, "clock-max-step", d.clock_max_step),
        clock_write_register=b.get(el, "clock-write-register", int, d.clock_write_register),
        clock_bcd=b.flag(el, "clock-bcd", d.clock_bcd),
    )
