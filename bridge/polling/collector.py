"""Collector: wires transports, channel workers, meter pollers and the poll scheduler.

``Collector(mapping, store)`` defines every tag key (Bad_WaitingForInitialData) and every
diagnostic key (Good) in the store, creates one transport and one ``ChannelWorker`` per channel,
starts the dial-in listeners it owns, and lets APScheduler triggers route poll jobs to the worker
that should serve each meter: its primary channel while that answers, its backup channel while the
primary is down or the meter fails on it (the primary is probed on its backed-off schedule meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from bridge.config.model import ChannelConfig, MeterConfig, PollGroup, SiteMapping
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.polling.archives import ArchiveSyncs
from bridge.polling.meter import DriverFactory, MeterPoller, default_driver
from bridge.polling.scheduler import PollScheduler
from bridge.polling.worker import ChannelWorker, JobAction
from bridge.storage.model import ReadingStore
from bridge.tags import TagStore
from bridge.tags.model import Scalar
from bridge.transport import Transport
from bridge.transport.dial_in import DialInListener
from bridge.transport.factory import create_transport

log = logging.getLogger(__name__)

#: builds a channel's transport (tests may substitute it)
TransportFactory = Callable[[ChannelConfig, Mapping[str, DialInListener]], Transport]


class Collector:
    """Polls every meter of a site mapping into a TagStore."""

    def __init__(
        self,
        mapping: SiteMapping,
        store: TagStore,
        listeners: Mapping[str, DialInListener] | None = None,
        *,
        transport_factory: TransportFactory | None = None,
        driver_factory: DriverFactory = default_driver,
        demote_after: int = 3,
        max_skip: int = 32,
        reading_store: ReadingStore | None = None,
        archive_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.mapping = mapping
        self.store = store
        self._given_listeners = listeners
        self._own_listeners = listeners is None
        self._listeners: dict[str, DialInListener] = dict(listeners or {})
        self._transport_factory = transport_factory or create_transport
        self._driver_factory = driver_factory
        self._demote_after = demote_after
        self._max_skip = max_skip
        self.workers: dict[str, ChannelWorker] = {}
        self.pollers: dict[str, MeterPoller] = {}
        self._users: dict[str, list[MeterPoller]] = {}  # channel → meters using it
        self._scheduler: PollScheduler | None = None
        self._fired: Mapping[str, int] = {}
        self._started = False
        self._built = False
        # meter archives, journals, backfill and clock (bridge/polling/archives.py)
        self._reading_store = reading_store
        self._archive_clock = archive_clock
        self.archives = ArchiveSyncs(mapping, reading_store, archive_clock)

    # -- accessors --------------------------------------------------------------------------
    @property
    def listeners(self) -> Mapping[str, DialInListener]:
        """Dial-in listeners by name (with their bound ``.port``)."""
        return self._listeners

    @property
    def triggers(self) -> Mapping[str, int]:
        """How many times each poll group has fired so far."""
        return self._fired

    def meter_state(self, meter: str) -> str:
        """The published state of a meter (``ok``, ``failing``, ``demoted`` …)."""
        return self.pollers[meter].state.value

    def diagnostics(self) -> dict[str, dict[str, Scalar]]:
        """Every meter's and channel's diagnostics: ``{"<meter>": {...}, "channel:<c>": {...}}``."""
        result: dict[str, dict[str, Scalar]] = {
            name: p.diag.as_dict() for name, p in self.pollers.items()
        }
        for name, worker in self.workers.items():
            result[f"channel:{name}"] = worker.diagnostics()
        return result

    def reset_meter(self, name: str) -> None:
        """Operator reset of a meter (after an authentication failure): poll it again."""
        poller = self.pollers.get(name)
        if poller is None:
            raise KeyError(f"no meter named {name!r}")
        log.info("meter %s: reset by operator", name)
        poller.reset()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Define keys, start listeners and workers, then the scheduler."""
        if self._started:
            return
        self._started = True
        try:
            if not self._built:
                self._build()
            if self._own_listeners:
                for listener in self._listeners.values():
                    await listener.start()
            for worker in self.workers.values():
                worker.start()
            self._scheduler = PollScheduler(self.mapping.poll_groups, self.trigger)
            self._fired = self._scheduler.fired
            self._scheduler.start()
            self.archives.start(self.store)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop triggers, close meter sessions where possible, close channels and listeners."""
        if self._scheduler is not None:
            await self._scheduler.stop()
            self._scheduler = None
        await self.archives.stop()
        await asyncio.gather(
            *(w.stop(self._farewell(w), self._farewell_timeout(w)) for w in self.workers.values())
        )
        if self._own_listeners:
            for listener in self._listeners.values():
                await listener.stop()
        self._started = False
        self._built = False

    async def apply(self, mapping: SiteMapping) -> None:
        """Switch to a new mapping (configuration reload).

        Polling stops, then starts again on the new mapping: tag values of meters that stay are
        kept (with their qualities); keys of meters, tags and channels that are gone are removed
        from the store. Dial-in modules of owned listeners dial in again.
        """
        was_started = self._started
        await self.stop()
        old_keys = self._owned_keys()
        self.mapping = mapping
        self._build()
        self.store.remove(old_keys - self._owned_keys())
        if was_started:
            await self.start()

    def _owned_keys(self) -> set[str]:
        keys = {k for p in self.pollers.values() for k in (*p.tag_keys, *p.diag.keys())}
        return keys | {k for w in self.workers.values() for k in w.diag_keys()}

    def _build(self) -> None:
        """(Re)create listeners, workers and pollers for ``self.mapping`` and define their keys."""
        mapping = self.mapping
        if self._own_listeners:
            self._listeners = {lc.name: DialInListener(lc) for lc in mapping.listeners}
        else:
            self._listeners = dict(self._given_listeners or {})
        self.workers, self.pollers, self._users = {}, {}, {}
        self._built = True
        for channel in mapping.channels:
            transport = self._transport_factory(channel, self._listeners)
            link = Link(transport, channel)
            self.workers[channel.name] = ChannelWorker(
                channel, transport, link, self.store, self._on_connection
            )
            self._users[channel.name] = []
        drivers: dict[str, list[MilurDriver]] = {}

        def driver_factory(meter: MeterConfig, site: SiteMapping) -> MilurDriver:
            # archive reads share the poller's drivers (one session per meter and link)
            driver = self._driver_factory(meter, site)
            drivers.setdefault(meter.name, []).append(driver)
            return driver

        for meter in mapping.meters:
            for channel_name in (meter.channel, meter.backup_channel):
                if channel_name is not None and channel_name not in self.workers:
                    # the loader rules this out; a hand-built mapping may not
                    raise ValueError(f"meter {meter.name} names unknown channel {channel_name!r}")
            poller = MeterPoller(
                mapping, meter, self.store, driver_factory, self._demote_after, self._max_skip
            )
            self.pollers[meter.name] = poller
            for channel_name in poller.paths:
                self._users[channel_name].append(poller)
        self.store.define(k for p in self.pollers.values() for k in p.tag_keys)
        for poller in self.pollers.values():
            poller.diag.define()
        for group in mapping.poll_groups:
            for name in group.meters:
                polled = self.pollers.get(name)
                if polled is None:
                    log.error("poll group %s names unknown meter %s; ignored", group.name, name)
                else:
                    polled.registers_for(group)  # reports unknown registers now, once
        self.archives = ArchiveSyncs(mapping, self._reading_store, self._archive_clock)
        self.archives.build(self.pollers, self.workers, drivers)

    # -- routing ----------------------------------------------------------------------------
    def trigger(self, group: PollGroup) -> None:
        """A poll group fired: queue a poll of each of its meters on the right worker."""
        for name in group.meters:
            poller = self.pollers.get(name)
            if poller is not None:
                self._route(group, poller)

    def _route(self, group: PollGroup, poller: MeterPoller) -> None:
        primary = self.workers[poller.meter.channel]
        health = poller.health[primary.name]
        backup_name = poller.other_path(primary.name)
        if backup_name is None:
            if health.due():
                self._enqueue(primary, group, poller)
            return
        if not primary.down and health.healthy:
            self._enqueue(primary, group, poller)
            return
        # the primary is down or the meter fails on it: values come through the backup, and
        # the primary is probed on its (backed-off) schedule until it answers again
        if not primary.down and health.due():
            self._enqueue(primary, group, poller)
        if poller.health[backup_name].due():
            self._enqueue(self.workers[backup_name], group, poller)

    @staticmethod
    def _enqueue(worker: ChannelWorker, group: PollGroup, poller: MeterPoller) -> None:
        registers = poller.registers_for(group)
        if not registers:
            return
        channel = worker.name

        async def job(link: Link) -> None:
            await poller.poll(channel, link, registers)

        worker.enqueue((group.name, poller.meter.name), job)

    def _on_connection(self, worker: ChannelWorker, connected: bool) -> None:
        for poller in self._users.get(worker.name, ()):
            poller.channel_changed(worker.name, connected)

    def _farewell_timeout(self, worker: ChannelWorker) -> float:
        answering = sum(p.state.value == "ok" for p in self._users.get(worker.name, ()))
        return min(worker.channel.response_timeout * max(1, answering), 5.0)

    def _farewell(self, worker: ChannelWorker) -> JobAction:
        pollers = list(self._users.get(worker.name, ()))

        async def close_all(link: Link) -> None:
            for poller in pollers:
                try:
                    await poller.close_sessions(worker.name, link)
                except Exception as exc:  # best effort: the meter may be gone
                    log.debug("meter %s: close session failed: %r", poller.meter.name, exc)

        return close_all
