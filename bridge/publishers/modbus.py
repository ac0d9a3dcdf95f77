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
from dataclasses import dataclass, field

from bridge.config.modbus_map import ModbusMap
from bridge.config.model import ModbusSettings, SiteMapping
from bridge.publishers.modbus_access import ClientGate
from bridge.publishers.modbus_image import ExceptionCode, RegisterImage
from bridge.publishers.modbus_layout import ServedLayout
from bridge.publishers.modbus_server import ModbusTcpEndpoint
from bridge.tags.model import TagChange
from bridge.tags.store import TagStore

log = logging.getLogger(__name__)

STATUS_REFRESH = 1.0  # seconds between refreshes of the age registers


def event_loop_factory(settings: ModbusSettings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory when ``settings.use_uvloop`` and uvloop is installed, else None.

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
class _Swap:
    """A queued switch to a new layout (reload), applied by the update task in queue order."""

    layout: ServedLayout
    snapshot: list[TagChange]
    done: asyncio.Future[None] = field(repr=False)


class ModbusPublisher:
    """Serves the mapping's tags over Modbus TCP: ``await start()``, ``on_changes``, ``await stop()``."""

    def __init__(self, mapping: SiteMapping, store: TagStore) -> None:
        """Resolve the register map (raises ``MappingError`` on a bad one); nothing starts yet."""
        self._store = store
        self._layout = ServedLayout(mapping)
        settings = mapping.modbus
        self.gate = ClientGate(settings.allow, settings.max_connections)
        self._endpoint = ModbusTcpEndpoint(self.image, self.gate, settings.host, settings.port)
        self._pending: list[Sequence[TagChange] | _Swap] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def map(self) -> ModbusMap:
        """The register map being served."""
        return self._layout.map

    @property
    def image(self) -> RegisterImage:
        """The served registers (read them; only the update task writes them)."""
        return self._layout.image

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the mapping asks for port 0)."""
        return self._endpoint.port

    def connections(self) -> int:
        """Open client connections."""
        return self._endpoint.connections()

    def diagnostics(self) -> dict[str, object]:
        """Counters for metrics: connections, requests, exceptions by code, refused and dropped."""
        requests, exceptions = self._endpoint.counters()
        return {
            "connections": self.connections(),
            "requests": requests,
            "exceptions": exceptions,
            "refused": self.gate.refused,
            "dropped": self.gate.dropped,
        }

    def metrics(self) -> dict[str, float]:
        """Figures for Prometheus (``BridgeMetrics.add_source``); names ending in _total count."""
        requests, exceptions = self._endpoint.counters()
        figures = {
            "milur_modbus_connections": float(self.connections()),
            "milur_modbus_requests_total": float(requests),
            "milur_modbus_exceptions_total": float(sum(exceptions.values())),
            "milur_modbus_refused_total": float(self.gate.refused),
            "milur_modbus_dropped_total": float(self.gate.dropped),
        }
        for code in ExceptionCode:
            name = f"milur_modbus_exceptions_{code.name.lower()}_total"
            figures[name] = float(exceptions.get(code, 0))
        return figures

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
        settings = self._layout.settings
        log.info(
            "modbus: serving %d values of %d unit ids on %s:%d",
            len(self.map.placements), len(self.image.units()), settings.host, self.port,
        )

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Queue a batch for the update task (called by the TagStore; never blocks)."""
        if self._task is None:
            return
        self._pending.append(changes)
        self._wakeup.set()

    async def apply_mapping(self, mapping: SiteMapping) -> None:
        """Serve a new mapping: new tags appear, removed ones disappear.

        Clients stay connected unless the listen address changes; a new allow-list or connection
        limit applies to new connections. A bad mapping raises ``MappingError`` and changes
        nothing.
        """
        layout = ServedLayout(mapping)
        old, new = self._layout.settings, mapping.modbus
        if self._task is None:
            self._layout = layout
        else:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            snapshot = [TagChange(k, v) for k, v in self._store.snapshot().items()]
            self._pending.append(_Swap(layout, snapshot, done))
            self._wakeup.set()
            await done
        gate = ClientGate(new.allow, new.max_connections)
        gate.refused, gate.dropped = self.gate.refused, self.gate.dropped
        self.gate = gate
        self._endpoint.set_gate(self.gate)
        if (old.host, old.port) != (new.host, new.port):
            running = self._task is not None
            if running:
                await self._endpoint.stop()
            self._endpoint = ModbusTcpEndpoint(self.image, self.gate, new.host, new.port)
            if running:
                await self._endpoint.start()

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
        for item in self._pending:
            if isinstance(item, _Swap) and not item.done.done():
                item.done.cancel()
        self._pending.clear()

    # -- the update task (the only writer of the register image) -----------------------------
    async def _update_loop(self, ready: asyncio.Event) -> None:
        self._apply_pending()
        self._layout.write_statuses(self._layout.statuses, time.time())
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
                self._apply_pending()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + STATUS_REFRESH
                    self._layout.write_statuses(self._layout.statuses, time.time())
            except Exception:  # a bug here must not stop serving the last good image
                log.exception("modbus: updating the register image failed")

    def _apply_pending(self) -> None:
        items, self._pending = self._pending, []
        for item in items:
            if isinstance(item, _Swap):
                self._swap(item)
                continue
            dirty = self._layout.apply(item)
            self._layout.write_statuses(dirty, time.time())

    def _swap(self, swap: _Swap) -> None:
        layout = swap.layout
        layout.apply(swap.snapshot)
        layout.write_statuses(layout.statuses, time.time())
        self._layout = layout
        self._endpoint.set_image(layout.image)
        if not swap.done.done():
            swap.done.set_result(None)
        log.info("modbus: now serving %d values", len(layout.map.placements))
