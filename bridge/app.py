"""BridgeApp: wires a site mapping into running parts and supervises them.

Start order: (simulator, for the demo) → tag store → storage restore → collection → publishers → status
server. Stop order is the reverse, so clients see the servers go away before the meters' sessions are
closed. A reload parses the new mapping completely first; a bad mapping leaves the running one alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.config.loader import MappingError, load_mapping
from bridge.config.model import SiteMapping
from bridge.polling.collector import Collector
from bridge.publishers.modbus import ModbusPublisher
from bridge.publishers.opcua import OpcUaPublisher
from bridge.status.metrics import BridgeMetrics
from bridge.status.server import StatusServer
from bridge.storage import SqliteReadingStore, StoreRecorder
from bridge.storage.archive_tags import ArchiveTagFeeder, ArchiveTap
from bridge.tags import TagStore

log = logging.getLogger(__name__)


def listen_everywhere(mapping: SiteMapping) -> SiteMapping:
    """The same mapping with every server bound to all interfaces (containers)."""
    endpoint = mapping.opcua.endpoint.replace("127.0.0.1", "0.0.0.0").replace("localhost", "0.0.0.0")
    return replace(
        mapping,
        opcua=replace(mapping.opcua, endpoint=endpoint),
        modbus=replace(mapping.modbus, host="0.0.0.0"),
        status=replace(mapping.status, host="0.0.0.0"),
    )


class BridgeApp:
    """The running bridge for one mapping."""

    def __init__(
        self,
        mapping: SiteMapping,
        *,
        mapping_path: Path | None = None,
        transform: Callable[[SiteMapping], SiteMapping] | None = None,
    ) -> None:
        self.mapping = mapping
        self.mapping_path = mapping_path
        self._transform = transform or (lambda m: m)
        self.store = TagStore()
        self.simulator: Any = None
        self.collector: Collector | None = None
        self.opcua: OpcUaPublisher | None = None
        self.modbus: ModbusPublisher | None = None
        self.status: StatusServer | None = None
        self.metrics = BridgeMetrics(self.store, lambda: self.mapping)
        self.readings: SqliteReadingStore | None = None
        self.recorder: StoreRecorder | None = None
        self.archive_tags: ArchiveTagFeeder | None = None  # newest archive records as tags
        self._running = False
        self._reload_lock = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every part the mapping enables; on failure, stop what was started and re-raise."""
        try:
            await self._start_simulator()
            await self._start_storage()
            self.collector = Collector(self.mapping, self.store, reading_store=self._archive_store())
            await self.collector.start()
            await self._start_publishers()
            if self.mapping.status.enabled:
                self.status = StatusServer(
                    self.mapping.status, lambda: self.mapping, self.store, self.metrics,
                    self.health, self.reload,
                )
                await self.status.start()
            self._running = True
        except BaseException:
            await self.stop()
            raise

    async def _start_simulator(self) -> None:
        sim = self.mapping.simulator
        if not sim.enabled or not sim.spec:
            return
        from bridge.simulator.spec import RunningSimulator, load_specs  # demo only

        self.simulator = []
        for spec in load_specs(Path(sim.spec)):
            running = RunningSimulator(spec)
            self.simulator.append(running)
            await running.start()

    async def _start_storage(self) -> None:
        if not self.mapping.storage.enabled:
            return
        path = Path(self.mapping.storage.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.readings = SqliteReadingStore(path, self.mapping.storage)
        await self.readings.open()
        self.recorder = StoreRecorder(self.readings, self.mapping)
        self.store.define(self.recorder.stored_keys)
        restored = await self.recorder.restore(self.store)
        self.store.add_listener(self.recorder)
        log.info("storage %s: restored the last value of %d tags", path, restored)
        self.archive_tags = ArchiveTagFeeder(self.mapping, self.store, self.readings)
        await self.archive_tags.start()

    def _archive_store(self) -> ArchiveTap | None:
        """The store the archive reader writes to: the reading store, seen by the archive tags."""
        return self.archive_tags.tap() if self.archive_tags is not None else None

    async def _start_publishers(self) -> None:
        if self.mapping.opcua.enabled:
            self.opcua = OpcUaPublisher(self.mapping, self.store, self.readings)
            await self.opcua.start()
            self.metrics.add_source(self.opcua.metrics)  # sessions, writes
        if self.mapping.modbus.enabled:
            self.modbus = ModbusPublisher(self.mapping, self.store)
            await self.modbus.start()
            self.metrics.add_source(self.modbus.metrics)

    async def stop(self) -> None:
        """Stop everything that runs, in reverse order; never raises for a part that failed."""
        self._running = False
        for name, part in (("status", self.status), ("modbus", self.modbus), ("opcua", self.opcua),
                           ("collector", self.collector)):
            if part is None:
                continue
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", name)
        self.status = self.modbus = self.opcua = None
        self.collector = None
        if self.recorder is not None:
            self.store.remove_listener(self.recorder)
        if self.readings is not None:
            try:
                await self.readings.close()
            except Exception:
                log.exception("closing storage failed")
            self.readings = None
            self.archive_tags = None
        for running in self.simulator or []:
            await running.stop()
        self.simulator = None

    # -- operations ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Summary for ``/health``: ok while the servers run and a mapping is loaded."""
        states: dict[str, int] = {}
        if self.collector is not None:
            for meter in self.mapping.meters:
                state = self.collector.meter_state(meter.name)
                states[state] = states.get(state, 0) + 1
        return {
            "ok": self._running,
            "mapping": self.mapping.source,
            "channels": len(self.mapping.channels),
            "meters": len(self.mapping.meters),
            "tags": len(self.mapping.tags),
            "meter_states": states,
            "opcua": self.opcua is not None,
            "modbus": self.modbus is not None,
        }

    async def reload(self) -> tuple[bool, list[str]]:
        """Load the mapping file again and apply it; a bad mapping is refused, the running one stays."""
        if self.mapping_path is None:
            return False, ["this bridge was not started from a mapping file"]
        async with self._reload_lock:
            try:
                new = self._transform(load_mapping(self.mapping_path))
            except MappingError as exc:
                lines = str(exc).splitlines()
                log.error("reload refused, the running mapping stays:\n%s", str(exc))
                return False, lines
            await self._apply(new)
            log.info("reloaded %s", self.mapping_path)
            return True, []

    async def _apply(self, new: SiteMapping) -> None:
        """Apply a new mapping: restart the parts it changes."""
        old = self.mapping
        self.mapping = new
        if self.archive_tags is not None:
            await self.archive_tags.apply_mapping(new)
        if self.collector is not None:
            await self.collector.apply(new)
        else:
            self.collector = Collector(new, self.store, reading_store=self._archive_store())
            await self.collector.start()
        for publisher in (self.opcua, self.modbus):
            if publisher is not None:
                await publisher.apply_mapping(new)
        removed = {t.key for t in old.tags} - {t.key for t in new.tags}
        self.store.remove(removed)
