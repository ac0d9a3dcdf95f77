"""What one resolved register map serves: value encoders, meter status blocks, the register image.

A ``ServedLayout`` turns tag changes into register writes. Only the publisher's update task calls
its writing methods (DESIGN.md: the served datastore is updated from one task only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.config.modbus_map import (
    STATUS_WORDS,
    ModbusMap,
    RegisterPlacement,
    StatusBlock,
    resolve_modbus_map,
)
from bridge.config.model import ModbusTable, SiteMapping
from bridge.publishers.modbus_image import RegisterImage
from bridge.publishers.modbus_snapshot import DailySnapshots
from bridge.publishers.modbus_values import ValueEncoder
from bridge.tags.keys import METER_STATES, meter_diag_key
from bridge.tags.model import Quality, TagChange, TagValue

log = logging.getLogger("bridge.publishers.modbus")

U16_MAX = 0xFFFF


def _severity(quality: Quality) -> tuple[int, int]:
    rank = 0 if quality.is_good else 2 if quality.is_bad else 1
    return rank, quality.modbus_code


def _age(now: float, timestamp: float | None) -> int:
    if timestamp is None:
        return U16_MAX
    return min(max(int(now - timestamp), 0), U16_MAX)


class MeterStatus:
    """The status block of one meter and what it is computed from (docs/modbus.md)."""

    def __init__(self, block: StatusBlock, keys: tuple[str, ...]) -> None:
        self.block = block
        self.keys = keys  # tags whose quality and source time the block summarises
        self.quality = Quality.Bad_WaitingForInitialData
        self.oldest: float | None = None
        self.newest: float | None = None
        self.failures = 0
        self.state = 0  # METER_STATES index: "waiting"

    def recompute(self, values: dict[str, TagValue]) -> None:
        """Worst quality and oldest/newest source time of the meter's tags."""
        current = [values[k] for k in self.keys if k in values]
        if not current:
            self.quality, self.oldest, self.newest = Quality.Bad_WaitingForInitialData, None, None
            return
        self.quality = max((tv.quality for tv in current), key=_severity)
        times = [tv.source_time.timestamp() for tv in current if tv.source_time is not None]
        self.newest = max(times) if times else None
        self.oldest = min(times) if len(times) == len(self.keys) else None

    def set_diagnostic(self, field: str, value: object) -> None:
        """Take a meter diagnostic (consecutive failures, state) from the store."""
        if field == "consecutive_failures":
            self.failures = min(max(int(value), 0), U16_MAX) if isinstance(value, int) else 0
        elif field == "state":
            self.state = METER_STATES.index(value) if value in METER_STATES else U16_MAX

    def registers(self, now: float) -> list[int]:
        """The block's registers, in ``STATUS_FIELDS`` order."""
        return [
            self.quality.modbus_code,
            _age(now, self.oldest),
            self.failures,
            self.state,
            _age(now, self.newest),
        ]


@dataclass(slots=True)
class _ServedValue:
    placement: RegisterPlacement
    encoder: ValueEncoder


class ServedLayout:
    """The registers of one mapping and how tag changes update them."""

    def __init__(self, mapping: SiteMapping) -> None:
        """Resolve the map (raises ``MappingError``) and build an empty register image."""
        self.map: ModbusMap = resolve_modbus_map(mapping)
        self.settings = mapping.modbus
        spans = [(p.unit_id, p.table, p.address, p.words) for p in self.map.placements]
        spans += [
            (b.unit_id, table, b.address, STATUS_WORDS)
            for b in self.map.status_blocks
            for table in ModbusTable
        ]
        spans += [(b.unit_id, t, b.address, b.words) for b in self.map.snapshot_blocks for t in ModbusTable]
        self.image = RegisterImage(spans)
        self.snapshots = DailySnapshots(self.map.snapshot_blocks, self.image, mapping.archives)
        self._served: dict[str, list[_ServedValue]] = {}
        for p in self.map.placements:
            encoder = ValueEncoder(p.data_type, p.word_order, p.scale)
            self._served.setdefault(p.key, []).append(_ServedValue(p, encoder))
        self.statuses: list[MeterStatus] = []
        self._status_of_key: dict[str, list[MeterStatus]] = {}
        self._diagnostic_of_key: dict[str, tuple[MeterStatus, str]] = {}
        served_keys: dict[str, list[str]] = {}
        for p in self.map.placements:
            served_keys.setdefault(p.tag.meter, []).append(p.key)
        all_keys: dict[str, list[str]] = {}
        for t in mapping.tags:
            all_keys.setdefault(t.meter, []).append(t.key)
        for block in self.map.status_blocks:
            keys = served_keys.get(block.meter) or all_keys.get(block.meter, [])
            status = MeterStatus(block, tuple(dict.fromkeys(keys)))
            self.statuses.append(status)
            for key in status.keys:
                self._status_of_key.setdefault(key, []).append(status)
            for field in ("consecutive_failures", "state"):
                self._diagnostic_of_key[meter_diag_key(block.meter, field)] = (status, field)
        self._values: dict[str, TagValue] = {}
        self._clipped: set[str] = set()

    def apply(self, changes: Iterable[TagChange]) -> list[MeterStatus]:
        """Write the changed values; returns the meters whose status must be rewritten."""
        dirty: dict[int, MeterStatus] = {}
        for change in changes:
            key, tv = change.key, change.value
            if key in self.snapshots.keys:
                self.snapshots.take(key, tv)
            for served in self._served.get(key, ()):
                self._write_value(served, tv)
            statuses = self._status_of_key.get(key)
            if statuses:
                self._values[key] = tv
                for status in statuses:
                    dirty[id(status)] = status
            diagnostic = self._diagnostic_of_key.get(key)
            if diagnostic is not None:
                status, field = diagnostic
                status.set_diagnostic(field, tv.value)
                dirty[id(status)] = status
        for status in dirty.values():
            status.recompute(self._values)
        self.snapshots.write()
        return list(dirty.values())

    def write_statuses(self, statuses: Iterable[MeterStatus], now: float) -> None:
        """Rewrite the status blocks (both tables) with ages as of ``now`` (epoch seconds)."""
        for status in statuses:
            registers = status.registers(now)
            for table in ModbusTable:
                self.image.write(status.block.unit_id, table, status.block.address, registers)

    def _write_value(self, served: _ServedValue, tv: TagValue) -> None:
        p = served.placement
        encoded = served.encoder.encode(tv.value)
        if encoded.clipped != (p.key in self._clipped):
            if encoded.clipped:
                self._clipped.add(p.key)
                log.warning(
                    "modbus: %s = %r does not fit %s (scale %g); served saturated",
                    p.key, tv.value, p.data_type.value, p.scale,
                )
            else:
                self._clipped.discard(p.key)
                log.info("modbus: %s fits %s again", p.key, p.data_type.value)
        bad = self.settings.bad_value_exception and tv.quality.is_bad
        self.image.write(p.unit_id, p.table, p.address, encoded.registers, bad)
