"""MeterClock: a meter's date/time (register 14), its drift, and the optional clock correction.

The clock is read at first contact and then every ``clock_interval`` (daily by default). The
drift, meter clock minus bridge clock in seconds, is published as ``<meter>.diag.clock_drift_s``
and is used to know what "now" is on the meter (which archive records exist yet).

Correction (``clock_correction``, off by default) writes the meter's clock when the drift exceeds
``clock_threshold``: at most once a day per meter and by at most ``clock_max_step`` seconds, and
it is logged and stored as an event (channel ``clock_correction``, value = the step in seconds).
It is off by default because (docs/storage.md, "Meter archives, backfill, clock"):

- the meter's archives are billing data stamped by its own clock; moving the clock moves the
  boundaries of the records that follow, so utilities allow only small, logged steps;
- the meter records a clock change in its own journal, and an auditor will ask about each one;
- writing needs a session with write rights, and how a Milur takes a clock write is [open]
  (FUNC 02 on register 14 is assumed, §4/§6): a rejected write must not cost a password lockout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.config.model import ArchiveSettings
from bridge.drivers.archives import ArchiveReader
from bridge.drivers.errors import MeterErrorReply
from bridge.drivers.link import Link
from bridge.polling.diagnostics import DiagnosticsWriter
from bridge.storage.model import ArchiveKind, ArchiveRecord, ReadingStore

log = logging.getLogger(__name__)

#: event channel of a clock correction in the archive table
CORRECTION_CHANNEL = "clock_correction"
#: the shortest time between two corrections of one meter
CORRECTION_PERIOD = timedelta(days=1)


def meter_zone(settings: ArchiveSettings) -> tzinfo:
    """The zone of the meters' clocks: ``settings.timezone``, or the bridge host's zone."""
    if settings.timezone:
        try:
            return ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"<archives timezone>: unknown time zone {settings.timezone!r}") from exc
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


class MeterClock:
    """Reads one meter's clock, publishes its drift and corrects it when allowed."""

    def __init__(
        self,
        meter: str,
        settings: ArchiveSettings,
        zone: tzinfo,
        diag: DiagnosticsWriter,
        reading_store: ReadingStore | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.meter = meter
        self.settings = settings
        self.zone = zone
        self._diag = diag
        self._store = reading_store
        self._now = now or (lambda: datetime.now(UTC))
        self.drift: float | None = None  # seconds, None until read
        self.last_check: datetime | None = None
        self.last_correction: datetime | None = None
        self.corrections = 0
        self._history_checked = False

    def __repr__(self) -> str:
        return f"MeterClock({self.meter!r}, drift={self.drift})"

    def due(self) -> bool:
        """True at first contact and ``clock_interval`` after the last read."""
        if self.last_check is None:
            return True
        return (self._now() - self.last_check).total_seconds() >= self.settings.clock_interval

    def meter_now(self) -> datetime:
        """The meter's current wall-clock time (naive, its zone), from the bridge clock + drift."""
        moment = self._now() + timedelta(seconds=self.drift or 0.0)
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def to_utc(self, meter_time: datetime) -> datetime:
        """A meter time (naive, the meter's zone) as timezone-aware UTC."""
        return meter_time.replace(tzinfo=self.zone).astimezone(UTC)

    async def check(self, reader: ArchiveReader, link: Link) -> float:
        """Read the clock, publish the drift, correct it if enabled and allowed; returns the drift."""
        before = self._now()
        meter_time = await reader.read_clock(link)
        after = self._now()
        # the reply left the meter somewhere in between; the clock has a 1-second resolution
        reference = before + (after - before) / 2
        drift = (self.to_utc(meter_time) - reference).total_seconds()
        self.drift = drift
        self.last_check = after
        self._diag.update({"clock_drift_s": round(drift, 3)})
        if self.settings.clock_correction and abs(drift) > self.settings.clock_threshold:
            if await self._correction_allowed():
                await self._correct(reader, link, drift)
        return self.drift

    async def _correction_allowed(self) -> bool:
        now = self._now()
        if not self._history_checked and self._store is not None:
            # a restart must not allow a second correction on the same day
            self._history_checked = True
            done = await self._store.archive(
                self.meter, ArchiveKind.EVENT, now - CORRECTION_PERIOD, now, CORRECTION_CHANNEL
            )
            if done:
                self.last_correction = max(r.timestamp for r in done)
        return self.last_correction is None or now - self.last_correction >= CORRECTION_PERIOD

    async def _correct(self, reader: ArchiveReader, link: Link, drift: float) -> None:
        step = -math.copysign(min(abs(drift), self.settings.clock_max_step), drift)
        target = self.meter_now() + timedelta(seconds=step)
        try:
            await reader.write_clock(link, target.replace(microsecond=0))
        except MeterErrorReply as exc:
            # refused (no write rights, or the meter takes clock writes another way, [open]):
            # say so once a day at most, never retry at once
            self.last_correction = self._now()
            log.warning("meter %s: clock correction refused (%s); tried again in a day at most",
                        self.meter, exc)
            return
        when = self._now()
        self.last_correction = when
        self.corrections += 1
        self.drift = drift + step
        self._diag.update({"clock_drift_s": round(self.drift, 3)})
        log.warning(
            "meter %s: clock corrected by %+.0f s (drift was %+.1f s; at most %.0f s once a day)",
            self.meter,
            step,
            drift,
            self.settings.clock_max_step,
        )
        if self._store is not None:
            record = ArchiveRecord(
                self.meter, ArchiveKind.EVENT, CORRECTION_CHANNEL, when, round(step, 3)
            )
            self._store.submit_archive([record])
