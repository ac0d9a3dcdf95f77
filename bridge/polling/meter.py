"""MeterPoller: one meter's polling outcome → tag values, qualities and diagnostics.

A meter has one path (its primary channel) or two (primary and backup). Each path has its own driver
(a session is per link) and its own ``MeterHealth``; the meter's published state is the best of its
paths. Polls run on the channel worker that owns the path's link; this class never touches a bus
by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.config.model import MeterConfig, PollGroup, SiteMapping, TagConfig
from bridge.drivers.errors import AuthenticationFailed, DriverError, MeterErrorReply
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver, RegisterReading
from bridge.polling.diagnostics import DiagnosticsWriter
from bridge.polling.health import MeterHealth, MeterState, best_state
from bridge.polling.worker import CHANNEL_DOWN_ERRORS
from bridge.tags import Quality, TagStore, TagValue
from bridge.tags.model import Scalar
from bridge.tags.store import utcnow

log = logging.getLogger(__name__)

#: builds the driver of one meter (tests may substitute it)
DriverFactory = Callable[[MeterConfig, SiteMapping], MilurDriver]


def default_driver(meter: MeterConfig, mapping: SiteMapping) -> MilurDriver:
    """A ``MilurDriver`` with the meter's template."""
    return MilurDriver(meter, mapping.templates[meter.template])


def tag_value(tag: TagConfig, value: object) -> Scalar:
    """A tag's value: the meter's engineering value with the tag's scale and offset on top."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if tag.scale == 1.0 and tag.offset == 0.0:
            return value
        return float(value) * tag.scale + tag.offset
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


@dataclass(slots=True)
class _LinkCounts:
    requests: int
    responses: int
    timeouts: int
    crc_errors: int

    @classmethod
    def of(cls, link: Link) -> _LinkCounts:
        s = link.stats
        return cls(s.requests, s.responses, s.timeouts, s.crc_errors)


class MeterPoller:
    """Polls one meter on whichever channel worker hands it a link, and publishes the outcome."""

    def __init__(
        self,
        mapping: SiteMapping,
        meter: MeterConfig,
        store: TagStore,
        driver_factory: DriverFactory = default_driver,
        demote_after: int = 3,
        max_skip: int = 32,
    ) -> None:
        self.meter = meter
        self._store = store
        self._bad_after = timedelta(seconds=meter.bad_after)
        self.paths = [meter.channel] + ([meter.backup_channel] if meter.backup_channel else [])
        self.health = {ch: MeterHealth(demote_after, max_skip) for ch in self.paths}
        self._drivers = {ch: driver_factory(meter, mapping) for ch in self.paths}
        self._tags: dict[str, list[TagConfig]] = {}
        self.tag_keys: list[str] = []
        self.retag(mapping)
        self._known_registers = set(mapping.templates[meter.template].registers)
        # keyed by group name and registers: a reload that changes a group computes it again
        self._group_registers: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self._identified = False
        self._auth_logged = False
        self._retired = False
        self._state = MeterState.WAITING
        self._connected = dict.fromkeys(self.paths, True)
        self.diag = DiagnosticsWriter.for_meter(
            store, meter.name, {"state": MeterState.WAITING.value, "channel_in_use": meter.channel}
        )

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> MeterState:
        """The meter's published state (best of its paths)."""
        return self._state

    def other_path(self, channel: str) -> str | None:
        """The meter's other channel, if it has a backup."""
        others = [p for p in self.paths if p != channel]
        return others[0] if others else None

    def driver(self, channel: str) -> MilurDriver:
        """The driver (and so the session) of the meter on one of its channels."""
        return self._drivers[channel]

    # -- reload -----------------------------------------------------------------------------
    def retag(self, mapping: SiteMapping) -> None:
        """Take the meter's tags from ``mapping`` (a reload that left the meter itself alone).

        The session, the health and the diagnostics stay; keys of new tags appear with the next
        poll, keys of removed tags are no longer written.
        """
        tags: dict[str, list[TagConfig]] = {}
        for tag in mapping.tags_of(self.meter.name):
            tags.setdefault(tag.register, []).append(tag)
        self._tags = tags
        self.tag_keys = [t.key for same in tags.values() for t in same]

    def retire(self) -> None:
        """Stop publishing (the meter was removed or replaced by a reload).

        A poll already running on a bus finishes there, but neither it nor a poll still queued
        writes to the store again: the removed keys stay removed, a replacement poller owns the
        kept ones. ``close_sessions`` still works, so a kept channel can say goodbye to the meter.
        """
        self._retired = True
        detached = TagStore()
        self._store = detached
        self.diag = DiagnosticsWriter.for_meter(detached, self.meter.name, self.diag.as_dict())

    def _other_serves(self, channel: str) -> bool:
        other = self.other_path(channel)
        return other is not None and self._connected[other] and self.health[other].healthy

    def _refresh_state(self, reason: str = "", extra: Mapping[str, Scalar] | None = None) -> None:
        """Recompute the published state; log a transition; publish it with ``extra`` fields."""
        new = best_state([self.health[p].state for p in self.paths])
        old, self._state = self._state, new
        failed = (MeterState.FAILING, MeterState.DEMOTED)
        if new in failed and old not in failed:
            log.warning("meter %s: not answering (%s)", self.meter.name, reason or new.value)
        elif new is MeterState.OK and old in failed:
            log.info("meter %s: answering again", self.meter.name)
        consecutive = min(self.health[p].consecutive_failures for p in self.paths)
        self.diag.update({**(extra or {}), "state": new.value, "consecutive_failures": consecutive})

    def registers_for(self, group: PollGroup) -> tuple[str, ...]:
        """The registers of ``group`` this meter's template has; the others are reported once."""
        cache_key = (group.name, group.registers)
        known = self._group_registers.get(cache_key)
        if known is None:
            unknown = [r for r in group.registers if r not in self._known_registers]
            if unknown:
                log.error(
                    "poll group %s: meter %s (template %s) has no register %s; not polled",
                    group.name,
                    self.meter.name,
                    self.meter.template,
                    ", ".join(unknown),
                )
                keys = [t.key for r in unknown for t in self._tags.get(r, ())]
                self._store.set_failed(keys, Quality.Bad_ConfigurationError)
            known = tuple(r for r in group.registers if r in self._known_registers)
            self._group_registers[cache_key] = known
        return known

    # -- channel events ---------------------------------------------------------------------
    def channel_changed(self, channel: str, connected: bool) -> None:
        """The connection state of one of the meter's channels changed."""
        self._connected[channel] = connected
        if not connected:
            # a new connection (or a re-plugged adapter) may not carry the old session
            self._drivers[channel].forget_session()
            self.health[channel].disconnected()
            if not self._other_serves(channel):
                self._store.set_failed(self.tag_keys, Quality.Bad_NotConnected)
        self._refresh_state()

    def reset(self) -> None:
        """Operator reset: forget an authentication failure and poll again."""
        for ch in self.paths:
            self.health[ch].reset()
            self._drivers[ch].reset_auth()
        self._auth_logged = False
        self._refresh_state()

    # -- polling ----------------------------------------------------------------------------
    async def poll(self, channel: str, link: Link, registers: Sequence[str]) -> None:
        """Read ``registers`` through ``link`` (the worker of ``channel`` owns it).

        Channel-down errors propagate to the worker; meter failures are handled here.
        """
        health = self.health[channel]
        if self._retired or health.state is MeterState.AUTH_FAILED:
            return
        driver = self._drivers[channel]
        before = _LinkCounts.of(link)
        try:
            if not self._identified:
                await self._identify(driver, link)
            readings = await driver.read_registers(link, list(registers))
        except AuthenticationFailed:
            self._on_auth_failed(self._count(link, before, 0))
            return
        except CHANNEL_DOWN_ERRORS:
            self.diag.update(self._count(link, before, 0))
            raise
        except DriverError as exc:
            errors = 1 if isinstance(exc, MeterErrorReply) else 0
            self._on_failure(channel, exc, self._count(link, before, errors))
            return
        meter_errors = self._publish_readings(registers, readings)
        diag = self._count(link, before, meter_errors, success=True)
        diag["last_success"] = utcnow().isoformat(timespec="seconds")
        if channel != self.diag.get("channel_in_use"):
            log.info("meter %s: now served through channel %s", self.meter.name, channel)
        diag["channel_in_use"] = channel
        health.success()
        self._refresh_state(extra=diag)  # one batch of diagnostics per poll

    async def _identify(self, driver: MilurDriver, link: Link) -> None:
        # model/firmware/serial (regs 32, 33, 68; protocol notes §6) at first contact; the
        # firmware tells a commissioning engineer which energy scale applies (§6 [open])
        ident = await driver.identify(link)
        self._identified = True
        self.diag.update(
            {
                "model_reported": ident.model,
                "firmware": ident.firmware,
                "serial_number": ident.serial,
            }
        )

    def _publish_readings(
        self, registers: Sequence[str], readings: Mapping[str, RegisterReading]
    ) -> int:
        """Store good readings; mark tags of failed registers. Returns the meter error count."""
        now = utcnow()
        good: dict[str, TagValue] = {}
        failed: list[str] = []
        meter_errors = 0
        for register in registers:
            reading = readings.get(register)
            tags = self._tags.get(register, ())
            if reading is None or reading.error is not None:
                if reading is not None and isinstance(reading.error, MeterErrorReply):
                    meter_errors += 1
                failed.extend(t.key for t in tags)
                continue
            for tag in tags:
                value = tag_value(tag, reading.value)
                good[tag.key] = TagValue(value, Quality.Good, reading.read_time, now)
        self._store.set_values(good)
        if failed:
            self._store.set_failed(failed, Quality.Bad_CommunicationError, self._bad_after)
        return meter_errors

    def _count(
        self, link: Link, before: _LinkCounts, meter_errors: int, success: bool = False
    ) -> dict[str, Scalar]:
        """The meter's counters after a poll (link counters are per channel: take the delta)."""
        after = _LinkCounts.of(link)
        requests = after.requests - before.requests
        d = self.diag
        values: dict[str, Scalar] = {
            "requests": int(d.get("requests") or 0) + requests,
            "responses": int(d.get("responses") or 0) + after.responses - before.responses,
            "timeouts": int(d.get("timeouts") or 0) + after.timeouts - before.timeouts,
            "crc_errors": int(d.get("crc_errors") or 0) + after.crc_errors - before.crc_errors,
            "meter_errors": int(d.get("meter_errors") or 0) + meter_errors,
        }
        if success and after.responses > before.responses:
            values["round_trip_ms"] = round(link.stats.last_round_trip * 1000.0, 3)
        return values

    def _on_failure(self, channel: str, exc: DriverError, diag: Mapping[str, Scalar]) -> None:
        self.health[channel].failure()
        if not self._other_serves(channel):
            self._store.set_failed(self.tag_keys, Quality.Bad_CommunicationError, self._bad_after)
        self._refresh_state(f"{type(exc).__name__} on {channel}", diag)

    def _on_auth_failed(self, diag: Mapping[str, Scalar]) -> None:
        for ch in self.paths:
            self.health[ch].auth_failed()
        if not self._auth_logged:
            # the driver has said so loudly (protocol notes §3: never retry a password)
            log.info("meter %s: state auth_failed; not polled until reset", self.meter.name)
            self._auth_logged = True
        self._store.set_failed(self.tag_keys, Quality.Bad_ConfigurationError)
        self._refresh_state(extra=diag)

    async def close_sessions(self, channel: str, link: Link) -> None:
        """Close the meter's session on ``channel`` (on shutdown)."""
        if self.health[channel].state is MeterState.OK:
            await self._drivers[channel].close_session(link)
