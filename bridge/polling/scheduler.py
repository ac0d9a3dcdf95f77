"""Poll-group triggers on APScheduler 3 — the only module that imports APScheduler (DESIGN.md rule 9).

A trigger does nothing but call ``on_trigger(group)``, which enqueues work in channel workers and
returns at once. Jobs are coroutine functions so ``AsyncIOScheduler`` runs them on the event loop
(plain functions would go to a thread pool). Missed runs coalesce into one (``coalesce=True``) and a
late run still fires within ``misfire_grace_time``; a trigger never runs twice at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.config.model import NO_ORIGIN, PollGroup

log = logging.getLogger(__name__)

#: lateness (seconds) after which a cron run is skipped rather than fired late
CRON_MISFIRE_GRACE = 60.0


class PollScheduler:
    """Fires ``on_trigger(group)`` for each poll group on its interval or cron schedule."""

    def __init__(
        self,
        groups: Sequence[PollGroup],
        on_trigger: Callable[[PollGroup], None],
        run_at_start: bool = True,
    ) -> None:
        self._groups = tuple(groups)
        self._on_trigger = on_trigger
        self._run_at_start = run_at_start
        self._scheduler: AsyncIOScheduler | None = None
        self.fired: dict[str, int] = {g.name: 0 for g in self._groups}

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``shutdown()``."""
        return self._scheduler is not None

    def start(self) -> None:
        """Add a job per poll group and start; call from the running event loop.

        Interval groups fire once right away (``run_at_start``), so values appear without waiting
        a whole interval; cron groups fire on their schedule only.
        """
        if self._scheduler is not None:
            return
        scheduler = AsyncIOScheduler()
        for group in self._groups:
            self._add(scheduler, group)
        scheduler.start()
        self._scheduler = scheduler

    def update(self, groups: Sequence[PollGroup]) -> None:
        """Follow a reloaded mapping's poll groups, touching only the groups that changed.

        An unchanged group keeps its job, so its cadence goes on undisturbed; a removed group's job
        goes; a new or changed group gets a new job, which fires at once (``run_at_start``) when it
        is an interval group. Where a group was declared (its origin) is no change.
        """
        old = {g.name: replace(g, origin=NO_ORIGIN) for g in self._groups}
        self._groups = tuple(groups)
        new = {g.name: g for g in self._groups}
        for name in old.keys() - new.keys():
            self._remove(name)
            self.fired.pop(name, None)
        for name, group in new.items():
            if old.get(name) == replace(group, origin=NO_ORIGIN):
                continue
            if name in old:
                self._remove(name)
            self.fired.setdefault(name, 0)
            if self._scheduler is not None:
                self._add(self._scheduler, group)

    def _remove(self, name: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(f"poll:{name}") is not None:
            self._scheduler.remove_job(f"poll:{name}")

    def shutdown(self) -> None:
        """Stop firing at once (prefer ``stop()`` from a coroutine).

        A trigger submitted but not yet run is cancelled, and APScheduler logs that as an error.
        """
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)

    async def stop(self) -> None:
        """Stop firing; a trigger already submitted to the loop runs to its end first."""
        if self._scheduler is None:
            return
        self._scheduler.pause()
        # a submitted trigger is a task that finishes within one loop iteration (it only
        # enqueues); let it, rather than have the executor cancel it
        for _ in range(3):
            await asyncio.sleep(0)
        self.shutdown()

    def _add(self, scheduler: AsyncIOScheduler, group: PollGroup) -> None:
        async def fire() -> None:
            self.fired[group.name] += 1
            self._on_trigger(group)

        if group.interval is not None:
            if group.interval <= 0:
                raise ValueError(f"poll group {group.name!r}: interval must be positive")
            trigger: IntervalTrigger | CronTrigger = IntervalTrigger(seconds=group.interval)
            grace = max(1.0, group.interval)
            first: dict[str, datetime] = {}
            if self._run_at_start:
                first["next_run_time"] = datetime.now(scheduler.timezone)
        elif group.cron is not None:
            trigger = CronTrigger.from_crontab(group.cron, timezone=scheduler.timezone)
            grace = CRON_MISFIRE_GRACE
            first = {}
        else:
            raise ValueError(f"poll group {group.name!r} has neither interval nor cron")
        scheduler.add_job(
            fire,
            trigger,
            id=f"poll:{group.name}",
            name=f"poll group {group.name}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(max(1.0, grace)),
            **first,
        )
