"""Meter archives into storage: daily records, 30-minute profile, power journal, and backfill.

For each meter that ``<archives>`` covers, a ``MeterArchiveSync`` finds what the store is missing
and reads it from the meter's own memory, OLDEST FIRST:

- the window is the last ``backfill_days`` on the meter's clock (``MeterClock.meter_now``);
- daily and profile records form a regular grid (days at 00:00, half-hours): the first grid
  point not yet stored starts the range, so after an outage (a dial-in module offline for two
  days) every missing day and half-hour is read, and nothing already stored is asked for;
- the power on/off journal is read from the newest stored event on, at first contact and once a
  meter day;
- each range is located with FUNC 10 (STATUS 1/2: ask again after ``search_retry`` seconds,
  without holding the bus) and read with FUNC 0C/0D/0B.

Every step is a *background* job of the channel worker and reads at most ``chunk`` records, so a
live poll waits for one chunk at most: live polls keep their cadence, archive reads fill the
gaps. Records are stored with ``ReadingStore.submit_archive``; (meter, kind, channel, time) is
unique, so a second backfill of the same period stores no duplicates. A sync runs on the cron
``schedule`` (default ``5,35 * * * *``: a day's record after 00:05, each half-hour after its
end) and whenever a meter's state becomes ``ok`` (first contact, answering again, its dial-in
module back after an outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from bridge.config.model import ArchiveSettings, PollGroup, SiteMapping
from bridge.drivers.archives import DAILY_LIST, PROFILE_LIST, ArchiveReader
from bridge.drivers.errors import DriverError
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.polling.clock import MeterClock, meter_zone
from bridge.polling.health import MeterState
from bridge.polling.meter import MeterPoller
from bridge.polling.scheduler import PollScheduler
from bridge.polling.worker import CHANNEL_DOWN_ERRORS, ChannelWorker
from bridge.storage.model import PROFILE_CHANNELS, ArchiveKind, ArchiveRecord, ReadingStore
from bridge.tags import TagStore
from bridge.tags.keys import meter_diag_key
from bridge.tags.model import TagChange

log = logging.getLogger(__name__)

SLOT = timedelta(minutes=30)
DAY = timedelta(days=1)
#: archive event channel of the power on/off journal
POWER_CHANNEL = "power"
#: meter states in which no archive read is attempted (such a meter gets its live polls only)
_UNREADY = (MeterState.FAILING, MeterState.DEMOTED, MeterState.AUTH_FAILED)

Step = Callable[[ArchiveReader, Link], Awaitable[None]]


def _floor(moment: datetime, step: timedelta) -> datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((moment - midnight) // step) * step


def _grid(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    points: list[datetime] = []
    t = first
    while t <= last:
        points.append(t)
        t += step
    return points


class MeterArchiveSync:
    """Reads one meter's missing archive records in background jobs (see the module docstring)."""

    def __init__(
        self,
        poller: MeterPoller,
        settings: ArchiveSettings,
        clock: MeterClock,
        reading_store: ReadingStore | None,
        route: Callable[[MeterPoller], tuple[ChannelWorker, MilurDriver]],
    ) -> None:
        self.poller = poller
        self.meter = poller.meter.name
        self.settings = settings
        self.clock = clock
        self._store = reading_store
        self._route = route
        self._steps: deque[Step] = deque()
        self._worker: ChannelWorker | None = None
        self._reader: ArchiveReader | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._delay = 0.0
        self._jobs = 0
        self._again = False
        self._failing = False
        self._journal_day: datetime | None = None
        self._known: dict[tuple[ArchiveKind, str], set[datetime]] = {}
        self.running = False
        self.syncs = 0  # completed syncs
        self.records = 0  # archive records read and submitted
        self._records_at_start = 0
        self.jobs_run = 0  # background jobs run

    def __repr__(self) -> str:
        return f"MeterArchiveSync({self.meter!r}, running={self.running})"

    # -- control ---------------------------------------------------------------------------
    def trigger(self) -> None:
        """Start a sync now (or once more after the running one)."""
        if self.running:
            self._again = True
            return
        if self.poller.state in _UNREADY:
            return  # failing, demoted or auth_failed: live polls only until it answers again
        self._worker, driver = self._route(self.poller)
        self._reader = ArchiveReader(driver, self.settings)
        self.running = True
        self._records_at_start = self.records
        self._steps = deque([self._clock_step, self._plan_step])
        self._enqueue()

    def stop(self) -> None:
        """Forget the running sync (on shutdown or when the channel went down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._steps.clear()
        self.running = False
        self._again = False

    def _enqueue(self) -> None:
        self._timer = None
        worker = self._worker
        if worker is None or not self.running:
            return
        self._jobs += 1
        worker.enqueue(("archives", self.meter, self._jobs), self._job, background=True)

    async def _job(self, link: Link) -> None:
        if not self.running or not self._steps or self._reader is None:
            return
        if self.poller.state in _UNREADY:
            self._finish()  # the meter stopped answering live polls: try again next time
            return
        step = self._steps.popleft()
        self.jobs_run += 1
        self._delay = 0.0
        try:
            await step(self._reader, link)
        except CHANNEL_DOWN_ERRORS:
            self.stop()  # the reconnection triggers a new sync
            raise
        except DriverError as exc:
            if not self._failing:
                log.warning("meter %s: archive read failed (%s); tried again later", self.meter, exc)
                self._failing = True
            self._finish()
            return
        except BaseException:
            self.stop()
            raise
        if not self._steps:
            self._finish()
        elif self._delay > 0:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._enqueue)
        else:
            self._enqueue()

    def _finish(self) -> None:
        self.stop()
        self.syncs += 1
        read = self.records - self._records_at_start
        if read:
            log.info("meter %s: %d archive values read from the meter's memory", self.meter, read)
        if self._again:
            self._again = False
            self.trigger()

    # -- steps -----------------------------------------------------------------------------
    async def _clock_step(self, reader: ArchiveReader, link: Link) -> None:
        if self.clock.due():
            await self.clock.check(reader, link)

    async def _plan_step(self, reader: ArchiveReader, link: Link) -> None:
        if self._store is None:
            return  # nothing to store archives in: the clock check is all
        now = self.clock.meter_now()
        window = now - timedelta(days=self.settings.backfill_days)
        deadline = asyncio.get_running_loop().time() + self.settings.search_timeout
        s = self.settings
        if s.daily and s.daily_registers:
            days = _grid(_floor(window, DAY) + DAY, _floor(now, DAY), DAY)
            first = await self._first_missing(ArchiveKind.DAILY, s.daily_registers[0], days)
            if first is not None:
                self._steps.append(self._search(ArchiveKind.DAILY, DAILY_LIST, first, now, deadline))
        if s.profile:
            slots = _grid(_floor(window, SLOT) + SLOT, _floor(now, SLOT) - SLOT, SLOT)
            first = await self._first_missing(ArchiveKind.PROFILE, PROFILE_CHANNELS[0], slots)
            if first is not None:
                self._steps.append(
                    self._search(ArchiveKind.PROFILE, PROFILE_LIST, first, now, deadline)
                )
        if s.journal and self._journal_day != _floor(now, DAY):
            start = await self._journal_start(window)
            self._steps.append(
                self._search(ArchiveKind.EVENT, s.power_journal, start, now, deadline)
            )

    async def _stored(self, kind: ArchiveKind, channel: str, start: datetime) -> set[datetime]:
        assert self._store is not None
        end = datetime.now(UTC) + timedelta(days=3650)
        rows = await self._store.archive(self.meter, kind, self.clock.to_utc(start), end, channel)
        known = self._known.setdefault((kind, channel), set())
        known.difference_update([t for t in known if t < self.clock.to_utc(start)])
        return {r.timestamp for r in rows} | known

    async def _first_missing(
        self, kind: ArchiveKind, channel: str, grid: Sequence[datetime]
    ) -> datetime | None:
        if not grid:
            return None
        stored = await self._stored(kind, channel, grid[0])
        return next((t for t in grid if self.clock.to_utc(t) not in stored), None)

    async def _journal_start(self, window: datetime) -> datetime:
        stored = await self._stored(ArchiveKind.EVENT, POWER_CHANNEL, window)
        if not stored:
            return window.replace(second=0, microsecond=0)
        newest = max(stored).astimezone(self.clock.zone).replace(tzinfo=None)
        return max(window, newest).replace(second=0, microsecond=0)

    def _search(
        self, kind: ArchiveKind, list_no: int, start: datetime, end: datetime, deadline: float
    ) -> Step:
        async def search(reader: ArchiveReader, link: Link) -> None:
            result = await reader.search(link, list_no, start, end)
            if result.pending:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning(
                        "meter %s: %s archive search still pending after %.0f s; tried again later",
                        self.meter,
                        kind.value,
                        self.settings.search_timeout,
                    )
                    return
                # §4: STATUS 1 accepted / 2 searching → ask again later, the bus stays free
                self._steps.appendleft(search)
                self._delay = self.settings.search_retry
                return
            if result.failed:
                log.warning("meter %s: %s archive search failed (status %d)",
                            self.meter, kind.value, result.status)
                return
            indexes = result.indexes()
            size = max(1, self.settings.chunk)
            chunks = [indexes[i : i + size] for i in range(0, len(indexes), size)]
            for n, chunk in enumerate(chunks, start=1):
                self._steps.append(self._read(kind, list_no, chunk, start, end, n == len(chunks)))
            if kind is ArchiveKind.EVENT and not chunks:
                self._journal_day = _floor(end, DAY)

        return search

    def _read(
        self,
        kind: ArchiveKind,
        list_no: int,
        indexes: Sequence[int],
        start: datetime,
        end: datetime,
        last: bool,
    ) -> Step:
        async def read(reader: ArchiveReader, link: Link) -> None:
            records: list[ArchiveRecord] = []
            for index in indexes:
                records.extend(await self._read_one(reader, link, kind, list_no, index, start, end))
            if records and self._store is not None:
                self._store.submit_archive(records)
                for r in records:
                    self._known.setdefault((r.kind, r.channel), set()).add(r.timestamp)
            self.records += len(records)
            if self._failing:
                log.info("meter %s: archive reads work again", self.meter)
                self._failing = False
            if kind is ArchiveKind.EVENT and last:
                self._journal_day = _floor(end, DAY)  # the journal is read up to today

        return read

    async def _read_one(
        self,
        reader: ArchiveReader,
        link: Link,
        kind: ArchiveKind,
        list_no: int,
        index: int,
        start: datetime,
        end: datetime,
    ) -> list[ArchiveRecord]:
        values: Sequence[tuple[str, float | int]]
        if kind is ArchiveKind.DAILY:
            daily = await reader.read_daily(link, index)
            moment = daily.time
            values = list(zip(self.settings.daily_registers, daily.energies, strict=False))
        elif kind is ArchiveKind.PROFILE:
            profile = await reader.read_profile(link, index)
            moment = profile.time
            values = list(zip(PROFILE_CHANNELS, profile.values, strict=False))
        else:
            event = await reader.read_journal(link, list_no, index)
            moment = event.time
            values = [(POWER_CHANNEL, event.flags)]
        if not start <= moment <= end:
            # not the record the search promised (the meter's memory moved on): skip it
            log.debug("meter %s: %s record %d at %s outside %s..%s; skipped",
                      self.meter, kind.value, index, moment, start, end)
            return []
        ts = self.clock.to_utc(moment)
        return [ArchiveRecord(self.meter, kind, ch, ts, round(v, 6)) for ch, v in values]


class ArchiveSyncs:
    """The archive syncs of every covered meter, their schedule and their routing to workers."""

    def __init__(
        self,
        mapping: SiteMapping,
        reading_store: ReadingStore | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = mapping.archives
        self._mapping = mapping
        self._store = reading_store
        self._now = now
        self.syncs: dict[str, MeterArchiveSync] = {}
        self._workers: Mapping[str, ChannelWorker] = {}
        self._drivers: Mapping[str, Sequence[MilurDriver]] = {}
        self._scheduler: PollScheduler | None = None
        self._tags: TagStore | None = None
        self._state_keys: dict[str, str] = {}
        self._ok: dict[str, bool] = {}

    def build(
        self,
        pollers: Mapping[str, MeterPoller],
        workers: Mapping[str, ChannelWorker],
        drivers: Mapping[str, Sequence[MilurDriver]],
    ) -> None:
        """Create a sync per covered meter; ``drivers[meter]`` follows ``poller.paths``."""
        self.syncs = {}
        self._workers, self._drivers = workers, drivers
        if not self.settings.enabled:
            return
        try:
            zone = meter_zone(self.settings)
        except ValueError as exc:
            log.error("archives not read: %s", exc)
            return
        for name, poller in pollers.items():
            if self.settings.covers(name):
                clock = MeterClock(name, self.settings, zone, poller.diag, self._store, self._now)
                self.syncs[name] = MeterArchiveSync(
                    poller, self.settings, clock, self._store, self._route
                )
                self._state_keys[meter_diag_key(name, "state")] = name

    def _route(self, poller: MeterPoller) -> tuple[ChannelWorker, MilurDriver]:
        channel = str(poller.diag.get("channel_in_use") or poller.meter.channel)
        if channel not in poller.paths:
            channel = poller.meter.channel
        driver = self._drivers[poller.meter.name][poller.paths.index(channel)]
        return self._workers[channel], driver

    def start(self, tags: TagStore) -> None:
        """Start the schedule and watch the meters' states in ``tags``.

        A meter's archives are synced whenever its state becomes ``ok``: at first contact, when
        it answers again after failing, and when its (dial-in) channel is back after an outage.
        """
        if not self.syncs:
            return
        group = PollGroup("archives", tuple(self.syncs), (), cron=self.settings.schedule)
        scheduler = PollScheduler([group], lambda _group: self.trigger(), run_at_start=False)
        try:
            scheduler.start()
        except ValueError as exc:
            log.error("archives: bad schedule %r (%s); read when meters answer only",
                      self.settings.schedule, exc)
        else:
            self._scheduler = scheduler
        self._tags = tags
        tags.add_listener(self)
        self.trigger([n for n, s in self.syncs.items() if s.poller.state is MeterState.OK])

    async def stop(self) -> None:
        """Stop the schedule and every running sync."""
        if self._scheduler is not None:
            await self._scheduler.stop()
            self._scheduler = None
        if self._tags is not None:
            self._tags.remove_listener(self)
            self._tags = None
        for sync in self.syncs.values():
            sync.stop()

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """TagStore listener: a meter whose state became ``ok`` gets a sync."""
        answering = []
        for change in changes:
            meter = self._state_keys.get(change.key)
            if meter is None:
                continue
            ok = change.value.value == MeterState.OK.value
            if ok and not self._ok.get(meter, False):
                answering.append(meter)
            self._ok[meter] = ok
        if answering:
            self.trigger(answering)

    def trigger(self, meters: Sequence[str] | None = None) -> None:
        """Start a sync of ``meters`` (default: all)."""
        for name in meters if meters is not None else list(self.syncs):
            sync = self.syncs.get(name)
            if sync is not None:
                sync.trigger()
