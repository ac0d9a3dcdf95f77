"""Writes the daily snapshot registers (``bridge/config/modbus_snapshot.py``) from the TagStore.

The values come from the daily archive tags ``<meter>.daily_<register>``
(``bridge/storage/archive_tags.py``): each holds the newest daily record of one channel, with the
record's time (the start of the meter's day) as source time. A block shows the newest record day
among its four channels; a channel whose newest record is older than that day reads NaN, so one
block never mixes two days. Only the Modbus publisher's update task calls ``take``/``write``.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo

from bridge.config.modbus_snapshot import SnapshotBlock
from bridge.config.model import ArchiveSettings, ModbusTable
from bridge.polling.clock import meter_zone
from bridge.publishers.modbus_image import RegisterImage
from bridge.publishers.modbus_values import ValueEncoder
from bridge.storage.archive_tags import daily_tag_name
from bridge.tags.model import Scalar, TagValue


class _MeterSnapshot:
    """One meter's block: the newest value and time of each energy field."""

    def __init__(self, block: SnapshotBlock) -> None:
        self.block = block
        energies = [f for f in block.fields if f.register is not None]
        self.encoders = [ValueEncoder(f.data_type, block.word_order) for f in energies]
        self.values: list[tuple[Scalar, datetime | None]] = [(None, None)] * len(energies)

    def registers(self, zone: tzinfo) -> list[int]:
        """The block's registers, in field order."""
        times = [moment for _, moment in self.values if moment is not None]
        newest = max(times) if times else None
        words: list[int] = []
        for encoder, (value, moment) in zip(self.encoders, self.values, strict=True):
            shown = value if moment is not None and moment == newest else math.nan
            words.extend(encoder.encode(shown).registers)
        if newest is None:
            return [*words, 0, 0, 0]
        day = newest.astimezone(zone)
        return [*words, day.year, day.month, day.day]


class DailySnapshots:
    """The snapshot blocks of a register map and the TagStore keys that feed them."""

    def __init__(
        self, blocks: tuple[SnapshotBlock, ...], image: RegisterImage, archives: ArchiveSettings
    ) -> None:
        """Write every block empty (NaN, day 0) into ``image``."""
        self._image = image
        self._zone: tzinfo | None = None
        self._archives = archives
        self._sources: dict[str, tuple[_MeterSnapshot, int]] = {}
        self._meters = [_MeterSnapshot(b) for b in blocks]
        for snapshot in self._meters:
            energies = [f for f in snapshot.block.fields if f.register is not None]
            for index, field in enumerate(energies):
                assert field.register is not None
                key = f"{snapshot.block.meter}.{daily_tag_name(field.register)}"
                self._sources[key] = (snapshot, index)
        #: TagStore keys that feed a snapshot block
        self.keys: frozenset[str] = frozenset(self._sources)
        self._dirty: dict[int, _MeterSnapshot] = {id(m): m for m in self._meters}
        self.write()

    def take(self, key: str, value: TagValue) -> None:
        """Note a new value of a daily archive tag (written by the next ``write``)."""
        source = self._sources.get(key)
        if source is None:
            return
        snapshot, index = source
        moment = value.source_time if value.value is not None else None
        snapshot.values[index] = (value.value, moment)
        self._dirty[id(snapshot)] = snapshot

    def write(self) -> None:
        """Rewrite the blocks that changed, in both tables."""
        if not self._dirty:
            return
        zone = self._meter_zone()
        for snapshot in self._dirty.values():
            registers = snapshot.registers(zone)
            for table in ModbusTable:
                self._image.write(snapshot.block.unit_id, table, snapshot.block.address, registers)
        self._dirty.clear()

    def _meter_zone(self) -> tzinfo:
        if self._zone is None:
            self._zone = meter_zone(self._archives)  # the loader checked the zone's name
        return self._zone
