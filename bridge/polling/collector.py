"""Collector: wires transports, channel workers, meter pollers and the poll scheduler.

``Collector(mapping, store)`` defines every tag key (Bad_WaitingForInitialData) and every
diagnostic key (Good) in the store, creates one transport and one ``ChannelWorker`` per channel,
starts the dial-in listeners it owns, and lets APScheduler triggers route poll jobs to the worker
that should serve each meter: its primary channel while that answers, its backup channel while the
primary is down or the meter fails on it (the primary is probed on its backed-off schedule meanwhile).
``apply(mapping)`` reloads as a difference: only what changed stops and starts (``reload.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from bridge.config.model import ChannelConfig, MeterConfig, PollGroup, SiteMapping
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.polling.archives import ArchiveSyncs
from bridge.polling.meter import DriverFactory, MeterPoller, default_driver
from bridge.polling.reload import MappingDiff, NameDiff, diff_mappings
from bridge.polling.scheduler import PollScheduler
from bridge.polling.worker import ChannelWorker, JobAction
from bridge.storage.model import ReadingStore
from bridge.tags import TagStore
from bridge.tags.model import Scalar
from bridge.transport import Transport, TransportUnavailable
from bridge.transport.dial_in import DialInListener, DialInTransport
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
        """Switch to a new mapping (configuration reload), changing only what differs.

        The difference (``bridge/polling/reload.py``) decides: a removed or changed channel stops
        (its meters' sessions closed) and a changed or new one starts; a removed or changed meter's
        poller retires (its session on a kept channel closed) and a changed or new meter gets a new
        one, polled at once; a removed, changed or new listener stops or starts. What did not
        change keeps running: its connection, its sessions, its health, its cadence, its dial-in
        modules. Tag values stay; keys of removed meters, tags and channels leave the store and new
        keys appear as Bad_WaitingForInitialData. A hand-built mapping naming an unknown channel is
        refused (``ValueError``) before anything changes.
        """
        self._check(mapping)
        if not self._started:
            old_keys = self._owned_keys()
            self.mapping = mapping
            self._build()
            self.store.remove(old_keys - self._owned_keys())
            return
        diff = diff_mappings(self.mapping, mapping, own_listeners=self._own_listeners)
        log.info("reload: %s", diff.summary())
        old_keys = self._owned_keys()
        self.mapping = mapping
        await self.archives.stop()
        await self._retire(diff)
        await self._replace_listeners(mapping, diff.listeners)
        self._add_workers(c for c in mapping.channels if c.name in diff.channels.created)
        for poller in self.pollers.values():  # kept meters: same session, same health
            poller.retag(mapping)
            for channel_name in poller.paths:
                if channel_name in diff.channels.changed:
                    poller.channel_changed(channel_name, False)  # its new worker reconnects
        added = self._add_pollers(m for m in mapping.meters if m.name in diff.meters.created)
        self._users = {name: [] for name in self.workers}
        for poller in self.pollers.values():
            for channel_name in poller.paths:
                self._users[channel_name].append(poller)
        self._define(added)
        self.store.remove(old_keys - self._owned_keys())
        for name in diff.channels.created:
            self.workers[name].start()
        if self._scheduler is not None:
            self._scheduler.update(mapping.poll_groups)
        self._poll_now(added, diff)
        self._build_archives()
        self.archives.start(self.store)

    async def _retire(self, diff: MappingDiff) -> None:
        """Take removed and changed channels and meters out of routing, then stop them."""
        stopping = [self.workers.pop(n) for n in sorted(diff.channels.replaced) if n in self.workers]
        farewells = [(w, self._farewell(w), self._farewell_timeout(w)) for w in stopping]
        for name in sorted(diff.meters.replaced):
            poller = self.pollers.pop(name, None)
            if poller is None:
                continue
            for channel_name in poller.paths:
                worker = self.workers.get(channel_name)  # a kept channel: close the session there
                if worker is not None and poller.state.value == "ok":
                    worker.enqueue(("reload:close", name), self._goodbye(poller, channel_name))
            poller.retire()
        await asyncio.gather(*(w.stop(f, t) for w, f, t in farewells))
        for worker in stopping:
            self._unregister(worker)

    @staticmethod
    def _goodbye(poller: MeterPoller, channel: str) -> JobAction:
        async def close(link: Link) -> None:
            await poller.close_sessions(channel, link)

        return close

    def _unregister(self, worker: ChannelWorker) -> None:
        """Forget a stopped dial-in channel in its listener (its module is a stranger now)."""
        transport = worker.transport
        if not isinstance(transport, DialInTransport):
            return
        for listener in self._listeners.values():
            if listener.channels.get(transport.expected_identity) is transport:
                del listener.channels[transport.expected_identity]

    async def _replace_listeners(self, mapping: SiteMapping, diff: NameDiff) -> None:
        """Stop removed and changed listeners, start changed and new ones (owned listeners only)."""
        if not self._own_listeners:
            return
        for name in sorted(diff.replaced):
            listener = self._listeners.pop(name, None)
            if listener is not None:
                await listener.stop()
        for config in mapping.listeners:
            if config.name in diff.created:
                listener = DialInListener(config)
                self._listeners[config.name] = listener
                try:
                    await listener.start()
                except TransportUnavailable as exc:
                    # its channels wait (not connected) until a later reload fixes the port
                    log.error("reload: %s", exc)

    def _poll_now(self, pollers: list[MeterPoller], diff: MappingDiff) -> None:
        """Poll new and changed meters at once in the interval groups whose job kept running."""
        if not pollers:
            return
        for group in self.mapping.poll_groups:
            if group.interval is None or group.name in diff.poll_groups.created:
                continue  # cron groups keep their schedule; new jobs fire at once anyway
            for poller in pollers:
                if poller.meter.name in group.meters:
                    self._route(group, poller)

    def _owned_keys(self) -> set[str]:
        keys = {k for p in self.pollers.values() for k in (*p.tag_keys, *p.diag.keys())}
        return keys | {k for w in self.workers.values() for k in w.diag_keys()}

    @staticmethod
    def _check(mapping: SiteMapping) -> None:
        channels = {c.name for c in mapping.channels}
        for meter in mapping.meters:
            for channel_name in (meter.channel, meter.backup_channel):
                if channel_name is not None and channel_name not in channels:
                    # the loader rules this out; a hand-built mapping may not
                    raise ValueError(f"meter {meter.name} names unknown channel {channel_name!r}")

    def _build(self) -> None:
        """(Re)create listeners, workers and pollers for ``self.mapping`` and define their keys."""
        mapping = self.mapping
        self._check(mapping)
        if self._own_listeners:
            self._listeners = {lc.name: DialInListener(lc) for lc in mapping.listeners}
        else:
            self._listeners = dict(self._given_listeners or {})
        self.workers, self.pollers, self._users = {}, {}, {}
        self._built = True
        self._add_workers(mapping.channels)
        pollers = self._add_pollers(mapping.meters)
        for poller in pollers:
            for channel_name in poller.paths:
                self._users[channel_name].append(poller)
        self._define(pollers)
        self._build_archives()

    def _add_workers(self, channels: Iterable[ChannelConfig]) -> None:
        for channel in channels:
            transport = self._transport_factory(channel, self._listeners)
            link = Link(transport, channel)
            self.workers[channel.name] = ChannelWorker(
                channel, transport, link, self.store, self._on_connection
            )
            self._users.setdefault(channel.name, [])

    def _add_pollers(self, meters: Iterable[MeterConfig]) -> list[MeterPoller]:
        added = []
        for meter in meters:
            poller = MeterPoller(
                self.mapping, meter, self.store, self._driver_factory, self._demote_after,
                self._max_skip,
            )
            self.pollers[meter.name] = poller
            added.append(poller)
        return added

    def _define(self, added: list[MeterPoller]) -> None:
        """Define tag keys (new ones only) and the diagnostics of ``added`` pollers."""
        self.store.define(k for p in self.pollers.values() for k in p.tag_keys)
        for poller in added:
            poller.diag.define()
        for group in self.mapping.poll_groups:
            for name in group.meters:
                polled = self.pollers.get(name)
                if polled is None:
                    log.error("poll group %s names unknown meter %s; ignored", group.name, name)
                else:
                    polled.registers_for(group)  # reports unknown registers now, once

    def _build_archives(self) -> None:
        # archive reads share the pollers' drivers (one session per meter and link)
        drivers: dict[str, list[MilurDriver]] = {
            name: [p.driver(c) for c in p.paths] for name, p in self.pollers.items()
        }
        self.archives = ArchiveSyncs(self.mapping, self._reading_store, self._archive_clock)
        self.archives.build(self.pollers, self.workers, drivers)

    # -- routing ----------------------------------------------------------------------------
    def trigger(self, group: PollGroup) -> None:
        """A poll group fired: queue a poll of each of its meters on the right worker."""
        for name in group.meters:
            poller = self.pollers.get(name)
            if poller is not None:
                self._route(group, poller)

    def _route(self, group: PollGroup, poller: MeterPoller) -> None:
        primary = self.workers.get(poller.meter.channel)
        backup_name = poller.other_path(poller.meter.channel)
        if primary is None or (backup_name is not None and backup_name not in self.workers):
            return  # a reload is restarting one of its channels
        health = poller.health[primary.name]
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
