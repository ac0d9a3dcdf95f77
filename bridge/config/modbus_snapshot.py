"""Daily snapshot registers: where each meter's last daily archive record sits on Modbus.

A meter whose daily archive is read (``<archives>`` with ``daily``, and ``<storage>`` enabled) gets
a snapshot block in its unit id, in both tables, right after its status block (docs/modbus.md):

- the four daily energy totals A+, A−, R+, R− (``SNAPSHOT_REGISTERS``), as float32 (float64 when
  the ``<modbus>`` data type is float64) in the section's word order; NaN until a record is known;
- the record's day on the meter's clock: year, month, day as three uint16 (0 until a record).

With layout ``flat`` the blocks follow the status blocks of all meters, in meter order. The
resolver (``bridge/config/modbus_map.py``) claims these registers before it places tags, so an
explicit tag address on them is an error and automatic addresses go around them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.config.model import ModbusTable, ModbusType, Origin, SiteMapping, WordOrder

#: daily-record channels (register names) served in the snapshot, in register order
SNAPSHOT_REGISTERS: tuple[tuple[str, str, str], ...] = (
    ("energy_active_import_total", "kWh", "A+"),
    ("energy_active_export_total", "kWh", "A-"),
    ("energy_reactive_import_total", "kvarh", "R+"),
    ("energy_reactive_export_total", "kvarh", "R-"),
)
DATE_FIELDS = ("year", "month", "day")
MAX_ADDRESS = 65535


@dataclass(frozen=True, slots=True)
class SnapshotField:
    """One value of a snapshot block: an energy total (``register`` set) or a date part."""

    name: str  # register name, or year / month / day
    offset: int  # from the block's address
    data_type: ModbusType
    unit: str
    description: str
    register: str | None = None

    @property
    def words(self) -> int:
        """Number of 16-bit registers."""
        return self.data_type.words


@dataclass(frozen=True, slots=True)
class SnapshotBlock:
    """A meter's daily snapshot registers, served in both tables."""

    unit_id: int
    address: int
    meter: str
    fields: tuple[SnapshotField, ...]
    word_order: WordOrder

    @property
    def words(self) -> int:
        """Number of 16-bit registers of the block."""
        last = self.fields[-1]
        return last.offset + last.words


def snapshot_fields(data_type: ModbusType) -> tuple[SnapshotField, ...]:
    """The fields of a block for a ``<modbus>`` data type (float64 stays float64, else float32)."""
    energy = ModbusType.FLOAT64 if data_type is ModbusType.FLOAT64 else ModbusType.FLOAT32
    fields: list[SnapshotField] = []
    offset = 0
    for register, unit, channel in SNAPSHOT_REGISTERS:
        text = f"daily {channel} energy total at the start of the record's day (NaN: no record)"
        fields.append(SnapshotField(register, offset, energy, unit, text, register))
        offset += energy.words
    for name in DATE_FIELDS:
        text = f"{name} of the daily record (meter's clock; 0: no record)"
        fields.append(SnapshotField(name, offset, ModbusType.UINT16, "", text))
        offset += 1
    return tuple(fields)


def has_daily_snapshot(mapping: SiteMapping, meter: str) -> bool:
    """True when ``meter``'s daily archive is read, so it gets a snapshot block."""
    archives = mapping.archives
    return mapping.storage.enabled and archives.daily and archives.covers(meter)


def place_snapshot_blocks(
    mapping: SiteMapping,
    unit_ids: Mapping[str, int],
    status_words: int,
    taken: dict[tuple[int, ModbusTable], dict[int, str]],
    error: Callable[[Origin, str], None],
) -> tuple[SnapshotBlock, ...]:
    """Place and claim every snapshot block; ``taken`` is the resolver's register ownership."""
    settings = mapping.modbus
    fields = snapshot_fields(settings.data_type)
    words = fields[-1].offset + fields[-1].words
    flat = settings.layout == "flat"
    first = settings.status_address + (len(mapping.meters) * status_words if flat else status_words)
    blocks: list[SnapshotBlock] = []
    for m in mapping.meters:
        if m.name not in unit_ids or not has_daily_snapshot(mapping, m.name):
            continue
        address = first + (len(blocks) * words if flat else 0)
        if address + words - 1 > MAX_ADDRESS:
            error(m.origin, f"meter {m.name}: daily snapshot registers at {address} run past {MAX_ADDRESS}")
            continue
        block = SnapshotBlock(unit_ids[m.name], address, m.name, fields, settings.word_order)
        owner = f"the daily snapshot registers of meter {m.name} ({m.origin})"
        clash = False
        for table in ModbusTable:
            owned = taken.setdefault((block.unit_id, table), {})
            for a in range(address, address + words):
                if a in owned and not clash:
                    clash = True
                    error(m.origin, f"meter {m.name}: daily snapshot register {a} of unit id "
                                    f"{block.unit_id} overlaps {owned[a]}")
                owned.setdefault(a, owner)
        if not clash:
            blocks.append(block)
    return tuple(blocks)
