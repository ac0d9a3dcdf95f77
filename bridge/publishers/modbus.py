"""The Modbus TCP publisher: serves the tag store as holding/input registers (docs/modbus.md).

A thin listener of the TagStore (DESIGN.md rule 5): ``on_changes`` only queues the batch; one
task (``modbus-datastore-update``) encodes values and writes the register image, and refreshes
the per-meter status registers (quality, ages, failures, state) once a second. The server reads
the image synchronously, so no reply mixes words of two different values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.config.modbus_map import (
    STATUS_WORDS,
    ModbusMap,
    RegisterPlacement,
    StatusBlock,
    resolve_modbus_map,
)
from bridge.config.model import ModbusSettings, ModbusTable, SiteMapping
from bridge.publishers.modbus_access import ClientGate
from bridge.publishers.modbus_image import RegisterImage
from bridge.publishers.modbus_server import ModbusTcpEndpoint
from bridge.publishers.modbus_values import ValueEncoder
from bridge.tags.keys import METER_STATES, meter_diag_key
from bridge.tags.model import Quality, TagChange, TagValue
from bridge.tags.store import TagStore

log = logging.getLogger(__name__)

STATUS_REFRESH = 1.0  # seconds between refreshes of the age registers
U16_MAX = 0xFFFF


def event_loop_factory(settings: ModbusSettings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Uvloop's loop factory when ``settings.use_uvloop`` and uvloop is installed, else None.

    The app chooses the loop: ``asyncio.Runner(loop_factory=event_loop_factory(settings))``.
    """
    if not settings.use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@dataclass(slots=True)
class _ServedValue:
    """One placement and its encoder."""

    placement: RegisterPlacement
    encoder: ValueEncoder


def _severity(quality: Quality) -> tuple[int, int]:
    rank = 0 if quality.is_good else 2 if quality.is_bad else 1
    return rank, quality.modbus_code


def _age(now: float, timestamp: float | None) -> int:
    if timestamp is None:
        return U16_MAX
    return min(max(int(now - timestamp), 0), U16_MAX)


class _MeterStatus:
    """The status block of one meter and what it is computed from."""

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


class ModbusPublisher:
    """Serves the mapping's tags over Modbus TCP: ``await start()``, ``on_changes``, ``await stop()``."""

    def __init__(self, mapping: SiteMapping, store: TagStore) -> None:
        """Resolve the register map (raises ``MappingError`` on a bad one); nothing starts yet."""
        self._store = store
        self._settings = mapping.modbus
        self.map: ModbusMap = resolve_modbus_map(mapping)
        spans = [(p.unit_id, p.table, p.address, p.words) for p in self.map.placements]
        spans += [
            (b.unit_id, table, b.address, STATUS_WORDS)
            for b in self.map.status_blocks
            for table in ModbusTable
        ]
        self.image = RegisterImage(spans)
        self.gate = ClientGate(self._settings.allow, self._settings.max_connections)
        self._endpoint = ModbusTcpEndpoint(
            self.image, self.gate, self._settings.host, self._settings.port
        )
        self._served: dict[str, list[_ServedValue]] = {}
        for p in self.map.placements:
            encoder = ValueEncoder(p.data_type, p.word_order, p.scale)
            self._served.setdefault(p.key, []).append(_ServedValue(p, encoder))
        self._statuses: list[_MeterStatus] = []
        self._status_of_key: dict[str, list[_MeterStatus]] = {}
        self._diagnostic_of_key: dict[str, tuple[_MeterStatus, str]] = {}
        self._build_statuses(mapping)
        self._values: dict[str, TagValue] = {}
        self._clipped: set[str] = set()
        self._pending: list[Sequence[TagChange]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _build_statuses(self, mapping: SiteMapping) -> None:
        for block in self.map.status_blocks:
            served = tuple(p.key for p in self.map.placements if p.tag.meter == block.meter)
            keys = served or tuple(t.key for t in mapping.tags if t.meter == block.meter)
            status = _MeterStatus(block, tuple(dict.fromkeys(keys)))
            self._statuses.append(status)
            for key in status.keys:
                self._status_of_key.setdefault(key, []).append(status)
            for field in ("consecutive_failures", "state"):
                self._diagnostic_of_key[meter_diag_key(block.meter, field)] = (status, field)

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the mapping asks for port 0)."""
        return self._endpoint.port

    def connections(self) -> int:
        """Open client connections."""
        return self._endpoint.connections()

    async def start(self) -> None:
        """Load the store's snapshot into the registers, then listen."""
        snapshot = self._store.add_listener(self)
        self._pending.append([TagChange(k, v) for k, v in snapshot.items()])
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._update_loop(ready), name="modbus-datastore-update")
        try:
            await ready.wait()
            await self._endpoint.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "modbus: serving %d values of %d unit ids on %s:%d",
            len(self.map.placements),
            len(self.image.units()),
            self._settings.host,
            self.port,
        )

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Queue a batch for the update task (called by the TagStore; never blocks)."""
        if self._task is None:
            return
        self._pending.append(changes)
        self._wakeup.set()

    async def stop(self) -> None:
        """Stop serving, close clients, end the update task."""
        self._store.remove_listener(self)
        await self._endpoint.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._pending.clear()

    # -- the update task (the only writer of the register image) -----------------------------
    async def _update_loop(self, ready: asyncio.Event) -> None:
        self._apply_pending()
        self._write_statuses(self._statuses)
        ready.set()
        next_refresh = time.monotonic() + STATUS_REFRESH
        while True:
            try:
                async with asyncio.timeout(max(next_refresh - time.monotonic(), 0.0)):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                dirty = self._apply_pending()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + STATUS_REFRESH
                    self._write_statuses(self._statuses)
                else:
                    self._write_statuses(dirty)
            except Exception:  # a bug here must not stop serving the last good image
                log.exception("modbus: updating the register image failed")

    def _apply_pending(self) -> list[_MeterStatus]:
        batches, self._pending = self._pending, []
        dirty: dict[int, _MeterStatus] = {}
        for batch in batches:
            for change in batch:
                self._apply(change, dirty)
        for status in dirty.values():
            status.recompute(self._values)
        return list(dirty.values())

    def _apply(self, change: TagChange, dirty: dict[int, _MeterStatus]) -> None:
        key, tv = change.key, change.value
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
        bad = self._settings.bad_value_exception and tv.quality.is_bad
        self.image.write(p.unit_id, p.table, p.address, encoded.registers, bad)

    def _write_statuses(self, statuses: Sequence[_MeterStatus]) -> None:
        now = time.time()
        for status in statuses:
            registers = status.registers(now)
            for table in ModbusTable:
                self.image.write(status.block.unit_id, table, status.block.address, registers)
