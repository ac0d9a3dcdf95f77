"""Resolves where every tag sits on the Modbus TCP server, and checks the placement.

The ``<modbus>`` section gives defaults (table, data type, word order, first data address); a
tag's ``ModbusPoint`` overrides any of them. Rules (documented in ``docs/modbus.md``):

- layout ``per-meter`` (default): one unit id per meter (``MeterConfig.modbus_unit_id`` or 1, 2, 3…
  in meter order, skipping ids given explicitly). Automatic addresses restart at
  ``data_address`` in every unit, in tag order, so meters of one model with the same tags get the
  same register layout.
- layout ``flat``: every tag under ``flat_unit_id``; automatic addresses run on across meters.
- a tag without an explicit address takes the first free run of registers at or after the
  cursor of its unit and table; explicit addresses are placed first and may not overlap.
- each meter has a status block of ``STATUS_WORDS`` registers at ``status_address`` of its unit
  id (in both tables); with layout ``flat`` the blocks follow each other in meter order.
- meters with a daily archive get daily snapshot registers after their status block
  (``bridge/config/modbus_snapshot.py``), claimed before any tag is placed;
- text and date/time registers are not served on Modbus: such tags are skipped, and a tag that
  asks for a Modbus placement explicitly is an error.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge.config.errors import ConfigError, MappingError
from bridge.config.modbus_snapshot import SnapshotBlock, place_snapshot_blocks
from bridge.config.model import (
    MeterConfig,
    ModbusPoint,
    ModbusSettings,
    ModbusTable,
    ModbusType,
    Origin,
    RegisterDef,
    RegisterFormat,
    SiteMapping,
    TagConfig,
    WordOrder,
)

LAYOUTS = ("per-meter", "flat")
MIN_UNIT_ID = 1
MAX_UNIT_ID = 247
MAX_ADDRESS = 65535
INTEGER_TYPES = frozenset(
    {ModbusType.INT16, ModbusType.UINT16, ModbusType.INT32, ModbusType.UINT32}
)
UNSIGNED_TYPES = frozenset({ModbusType.UINT16, ModbusType.UINT32})
_SIGNED_FORMATS = frozenset({RegisterFormat.S16, RegisterFormat.S24, RegisterFormat.S32})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class StatusField:
    """One register of a meter's status block."""

    name: str
    description: str


#: The per-meter status block, in register order (offsets from ``status_address``).
STATUS_FIELDS: tuple[StatusField, ...] = (
    StatusField("quality", "worst quality code of the meter's served tags (0 good ... 5)"),
    StatusField(
        "age_oldest", "seconds since the oldest source time of the meter's served tags (65535: never)"
    ),
    StatusField("failures", "consecutive failed transactions with the meter (saturates at 65535)"),
    StatusField("state", "meter state, index in METER_STATES (65535: unknown)"),
    StatusField(
        "age_newest", "seconds since the newest source time of the meter's served tags (65535: never)"
    ),
)
STATUS_WORDS = len(STATUS_FIELDS)


@dataclass(frozen=True, slots=True)
class RegisterPlacement:
    """Where and how one tag is served."""

    unit_id: int
    table: ModbusTable
    address: int
    data_type: ModbusType
    word_order: WordOrder
    scale: float  # integer types: register = round(value * scale); 1.0 for floats
    tag: TagConfig
    unit: str  # engineering unit of the tag

    @property
    def words(self) -> int:
        """Number of 16-bit registers."""
        return self.data_type.words

    @property
    def key(self) -> str:
        """TagStore key of the tag."""
        return self.tag.key


@dataclass(frozen=True, slots=True)
class StatusBlock:
    """A meter's status registers (``STATUS_FIELDS``), served in both tables."""

    unit_id: int
    address: int
    meter: str


@dataclass(frozen=True, slots=True)
class ModbusMap:
    """The complete, resolved register map of a site."""

    settings: ModbusSettings
    unit_ids: Mapping[str, int]  # meter name → unit id (read-only)
    placements: tuple[RegisterPlacement, ...]  # sorted by unit id, table, address
    status_blocks: tuple[StatusBlock, ...]  # meter order
    skipped: tuple[TagConfig, ...] = field(default=())  # text/date tags, not served
    snapshot_blocks: tuple[SnapshotBlock, ...] = field(default=())  # daily snapshots, meter order


def resolve_modbus_map(mapping: SiteMapping) -> ModbusMap:
    """Resolve every tag's placement; raises ``MappingError`` when the placement is invalid."""
    resolved, errors = _Resolver(mapping).run()
    if errors:
        raise MappingError(errors)
    return resolved


def check_modbus_map(mapping: SiteMapping) -> list[ConfigError]:
    """Every problem of the mapping's Modbus placement, each with its origin (file:line)."""
    if not mapping.modbus.enabled:
        return []
    return _Resolver(mapping).run()[1]


def _describe(key: str, origin: Origin) -> str:
    return f"{key} ({origin})"


class _Resolver:
    """One resolution pass; collects every error instead of stopping at the first."""

    def __init__(self, mapping: SiteMapping) -> None:
        self.mapping = mapping
        self.settings = mapping.modbus
        self.errors: list[ConfigError] = []
        # (unit, table) → register address → description of its owner
        self.taken: dict[tuple[int, ModbusTable], dict[int, str]] = {}
        self.meters = {m.name: m for m in mapping.meters}

    def error(self, origin: Origin, message: str) -> None:
        self.errors.append(ConfigError(origin.file, origin.line, message))

    def run(self) -> tuple[ModbusMap, list[ConfigError]]:
        self.check_settings()
        flat = self.settings.layout == "flat"
        unit_ids = self.assign_unit_ids(flat)
        blocks = self.place_status_blocks(unit_ids, flat)
        snapshots = place_snapshot_blocks(self.mapping, unit_ids, STATUS_WORDS, self.taken, self.error)
        explicit: list[RegisterPlacement] = []
        automatic: list[RegisterPlacement] = []
        skipped: list[TagConfig] = []
        for tag in self.mapping.tags:
            placement = self.resolve_tag(tag, unit_ids, flat, skipped)
            if placement is None:
                continue
            if tag.modbus is not None and tag.modbus.address is not None:
                explicit.append(placement)
            else:
                automatic.append(placement)
        placed = [p for p in explicit if self.claim_explicit(p)]
        placed.extend(self.place_automatic(automatic))
        placed.sort(key=lambda p: (p.unit_id, p.table.value, p.address))
        resolved = ModbusMap(
            self.settings, MappingProxyType(unit_ids), tuple(placed), blocks, tuple(skipped), snapshots
        )
        return resolved, self.errors

    # -- section ----------------------------------------------------------------------------
    def check_settings(self) -> None:
        s = self.settings
        if s.layout not in LAYOUTS:
            self.error(s.origin, f"modbus layout {s.layout!r} is not one of {', '.join(LAYOUTS)}")
        if not 0 <= s.port <= 65535:
            self.error(s.origin, f"modbus port {s.port} is outside 0..65535")
        if s.max_connections < 1:
            self.error(s.origin, f"modbus max-connections {s.max_connections} must be at least 1")
        for name, value in (("status", s.status_address), ("data", s.data_address)):
            if not 0 <= value <= MAX_ADDRESS:
                self.error(s.origin, f"modbus {name} address {value} is outside 0..{MAX_ADDRESS}")
        for entry in s.allow:
            try:
                parse_network(entry)
            except ValueError:
                self.error(s.origin, f"modbus allow entry {entry!r} is not an IP address or network")

    # -- unit ids ---------------------------------------------------------------------------
    def check_unit_id(self, unit_id: int, origin: Origin, what: str) -> bool:
        if MIN_UNIT_ID <= unit_id <= MAX_UNIT_ID:
            return True
        self.error(origin, f"{what}: modbus unit id {unit_id} is outside {MIN_UNIT_ID}..{MAX_UNIT_ID}")
        return False

    def assign_unit_ids(self, flat: bool) -> dict[str, int]:
        meters = self.mapping.meters
        if flat:
            self.check_unit_id(self.settings.flat_unit_id, self.settings.origin, "layout flat")
            for m in meters:
                if m.modbus_unit_id is not None:
                    self.error(
                        m.origin,
                        f"meter {m.name}: a modbus unit id has no effect with layout flat "
                        f"(every meter is served under unit id {self.settings.flat_unit_id})",
                    )
            return {m.name: self.settings.flat_unit_id for m in meters}
        owners: dict[int, MeterConfig] = {}
        unit_ids: dict[str, int] = {}
        for m in meters:
            if m.modbus_unit_id is None:
                continue
            if not self.check_unit_id(m.modbus_unit_id, m.origin, f"meter {m.name}"):
                continue
            first = owners.get(m.modbus_unit_id)
            if first is not None:
                self.error(
                    m.origin,
                    f"meter {m.name}: modbus unit id {m.modbus_unit_id} is already used by "
                    f"meter {_describe(first.name, first.origin)}",
                )
                continue
            owners[m.modbus_unit_id] = m
            unit_ids[m.name] = m.modbus_unit_id
        next_id = MIN_UNIT_ID
        left_out: list[MeterConfig] = []
        for m in meters:
            if m.modbus_unit_id is not None:
                continue
            while next_id in owners:
                next_id += 1
            if next_id > MAX_UNIT_ID:
                left_out.append(m)
                continue
            owners[next_id] = m
            unit_ids[m.name] = next_id
        if left_out:
            first = left_out[0]
            self.error(
                first.origin,
                f"meter {first.name} and {len(left_out) - 1} more: no modbus unit id left; layout "
                f"per-meter serves at most {MAX_UNIT_ID} meters, use layout flat",
            )
        return unit_ids

    # -- status blocks ----------------------------------------------------------------------
    def place_status_blocks(self, unit_ids: dict[str, int], flat: bool) -> tuple[StatusBlock, ...]:
        blocks = []
        for index, m in enumerate(self.mapping.meters):
            if m.name not in unit_ids:
                continue
            address = self.settings.status_address + (index * STATUS_WORDS if flat else 0)
            if address + STATUS_WORDS - 1 > MAX_ADDRESS:
                self.error(
                    m.origin, f"meter {m.name}: status registers at {address} run past {MAX_ADDRESS}"
                )
                continue
            block = StatusBlock(unit_ids[m.name], address, m.name)
            for table in ModbusTable:
                owned = self.taken.setdefault((block.unit_id, table), {})
                for a in range(address, address + STATUS_WORDS):
                    owned[a] = f"the status registers of meter {_describe(m.name, m.origin)}"
            blocks.append(block)
        return tuple(blocks)

    # -- tags -------------------------------------------------------------------------------
    def resolve_tag(
        self, tag: TagConfig, unit_ids: dict[str, int], flat: bool, skipped: list[TagConfig]
    ) -> RegisterPlacement | None:
        meter = self.meters.get(tag.meter)
        template = self.mapping.templates.get(meter.template) if meter else None
        register = template.registers.get(tag.register) if template else None
        if meter is None or register is None:
            return None  # the loader reports unknown meters and registers
        point = tag.modbus or ModbusPoint()
        if not register.is_numeric:
            if tag.modbus is not None:
                self.error(
                    tag.origin,
                    f"tag {tag.key}: register {register.name} is {register.fmt.value} text, which "
                    "is not served on Modbus; remove its modbus placement",
                )
            skipped.append(tag)
            return None
        s = self.settings
        unit_id = point.unit_id if point.unit_id is not None else unit_ids.get(meter.name)
        if unit_id is None or not self.check_unit_id(unit_id, tag.origin, f"tag {tag.key}"):
            return None
        data_type = point.data_type or s.data_type
        scale = self.check_scale(tag, point, data_type)
        self.check_value_fits(tag, meter, register, data_type)
        return RegisterPlacement(
            unit_id=unit_id,
            table=point.table or s.table,
            address=point.address if point.address is not None else -1,
            data_type=data_type,
            word_order=point.word_order or s.word_order,
            scale=scale,
            tag=tag,
            unit=tag.unit if tag.unit is not None else register.unit,
        )

    def check_scale(self, tag: TagConfig, point: ModbusPoint, data_type: ModbusType) -> float:
        if point.scale is None:
            return 1.0
        if not math.isfinite(point.scale) or point.scale <= 0:
            self.error(tag.origin, f"tag {tag.key}: modbus scale {point.scale} must be positive")
            return 1.0
        if data_type not in INTEGER_TYPES and point.scale != 1.0:
            self.error(
                tag.origin,
                f"tag {tag.key}: a modbus scale applies to integer types only, not "
                f"{data_type.value}; convert units with the tag's scale instead",
            )
            return 1.0
        return point.scale

    def check_value_fits(
        self, tag: TagConfig, meter: MeterConfig, register: RegisterDef, data_type: ModbusType
    ) -> None:
        if data_type in UNSIGNED_TYPES:
            negative = (
                register.fmt in _SIGNED_FORMATS
                or tag.scale < 0
                or tag.offset < 0
                or self.mapping.effective_scale(meter, register.name) < 0
            )
            if negative:
                self.error(
                    tag.origin,
                    f"tag {tag.key}: register {register.name} can be negative, which "
                    f"{data_type.value} cannot hold; use a signed or float type",
                )
        if register.energy and data_type.words == 1:
            self.error(
                tag.origin,
                f"tag {tag.key}: energy counter {register.name} overflows a 16-bit "
                f"{data_type.value}; use uint32, float32 or float64",
            )

    # -- addresses --------------------------------------------------------------------------
    def claim_explicit(self, p: RegisterPlacement) -> bool:
        last = p.address + p.words - 1
        if p.address < 0 or last > MAX_ADDRESS:
            self.error(
                p.tag.origin,
                f"tag {p.key}: modbus address {p.address} ({p.data_type.value}, {p.words} "
                f"registers) is outside 0..{MAX_ADDRESS}",
            )
            return False
        owned = self.taken.setdefault((p.unit_id, p.table), {})
        for a in range(p.address, last + 1):
            if a in owned:
                self.error(
                    p.tag.origin,
                    f"tag {p.key}: {p.table.value} register {a} of unit id {p.unit_id} "
                    f"overlaps {owned[a]}",
                )
                return False
        for a in range(p.address, last + 1):
            owned[a] = f"tag {_describe(p.key, p.tag.origin)}"
        return True

    def place_automatic(self, pending: list[RegisterPlacement]) -> Iterator[RegisterPlacement]:
        cursors: dict[tuple[int, ModbusTable], int] = {}
        for p in pending:
            slot = (p.unit_id, p.table)
            owned = self.taken.setdefault(slot, {})
            address = cursors.get(slot, self.settings.data_address)
            while any(a in owned for a in range(address, address + p.words)):
                address += 1
            if address + p.words - 1 > MAX_ADDRESS:
                self.error(
                    p.tag.origin,
                    f"tag {p.key}: no room for an automatic address in unit id {p.unit_id} "
                    f"below {MAX_ADDRESS}",
                )
                cursors[slot] = address
                continue
            for a in range(address, address + p.words):
                owned[a] = f"tag {_describe(p.key, p.tag.origin)}"
            cursors[slot] = address + p.words
            yield RegisterPlacement(
                p.unit_id, p.table, address, p.data_type, p.word_order, p.scale, p.tag, p.unit
            )


def parse_network(entry: str) -> IPNetwork:
    """An allow-list entry (address or network, IPv4 or IPv6) as a network."""
    return ipaddress.ip_network(entry.strip(), strict=False)

