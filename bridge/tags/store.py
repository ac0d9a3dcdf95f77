"""TagStore: the single hub. One writer (the event loop's polling side), many listeners."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bridge.tags.model import Quality, Scalar, TagChange, TagValue

log = logging.getLogger(__name__)


class TagListener(Protocol):
    """Receives batches of changes; must return quickly (queue work, do not await)."""

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Handle a batch of changes."""


def utcnow() -> datetime:
    """Timezone-aware UTC now."""
    return datetime.now(UTC)


class TagStore:
    """Current value of every tag, keyed by ``"<meter>.<tag>"`` (or diagnostics keys).

    All writes happen on the event loop (single writer). Listeners are called synchronously with
    each batch, after the store is updated. A failed read never refreshes ``source_time``: the last
    value keeps its meter read time and its quality is lowered (DESIGN.md rule 4).
    """

    def __init__(self) -> None:
        self._values: dict[str, TagValue] = {}
        self._listeners: list[TagListener] = []

    # -- definition -------------------------------------------------------------------------
    def define(self, keys: Iterable[str], quality: Quality = Quality.Bad_WaitingForInitialData) -> None:
        """Create entries for new keys (existing keys are left as they are)."""
        now = utcnow()
        added = []
        for key in keys:
            if key not in self._values:
                tv = TagValue(None, quality, None, now)
                self._values[key] = tv
                added.append(TagChange(key, tv))
        self._notify(added)

    def remove(self, keys: Iterable[str]) -> None:
        """Forget keys (used by configuration reload)."""
        for key in keys:
            self._values.pop(key, None)

    # -- reading ----------------------------------------------------------------------------
    def get(self, key: str) -> TagValue | None:
        """Current value of one tag."""
        return self._values.get(key)

    def snapshot(self) -> dict[str, TagValue]:
        """A copy of every current value (for a new listener)."""
        return dict(self._values)

    def keys(self) -> list[str]:
        """All defined keys."""
        return list(self._values)

    def __len__(self) -> int:
        return len(self._values)

    # -- listeners --------------------------------------------------------------------------
    def add_listener(self, listener: TagListener) -> dict[str, TagValue]:
        """Register a listener and return the snapshot it should start from."""
        self._listeners.append(listener)
        return self.snapshot()

    def remove_listener(self, listener: TagListener) -> None:
        """Unregister a listener."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- writing (single writer) --------------------------------------------------------------
    def set_good(self, values: Mapping[str, Scalar], source_time: datetime) -> None:
        """Store fresh readings taken from a meter at ``source_time``."""
        now = utcnow()
        changes = []
        for key, value in values.items():
            old = self._values.get(key)
            if (
                old is not None
                and old.quality is Quality.Good
                and old.value == value
                and old.source_time == source_time
            ):
                continue
            tv = TagValue(value, Quality.Good, source_time, now)
            self._values[key] = tv
            changes.append(TagChange(key, tv))
        self._notify(changes)

    def set_values(self, values: Mapping[str, TagValue]) -> None:
        """Store complete TagValues (restore from storage, diagnostics); unchanged ones are skipped."""
        changes = []
        for key, tv in values.items():
            if self._values.get(key) == tv:
                continue
            self._values[key] = tv
            changes.append(TagChange(key, tv))
        self._notify(changes)

    def set_failed(
        self,
        keys: Iterable[str],
        quality: Quality = Quality.Bad_CommunicationError,
        bad_after: timedelta | None = None,
    ) -> None:
        """Lower the quality of ``keys`` after a failed read, keeping value and source time.

        With ``quality`` Bad_CommunicationError and a ``bad_after`` age: a value younger than
        that age becomes Uncertain_LastUsableValue, an older one Bad_CommunicationError. Other
        qualities (Bad_NotConnected, Bad_ConfigurationError) apply as given.
        """
        now = utcnow()
        changes = []
        for key in keys:
            old = self._values.get(key)
            if old is None:
                continue
            new_q = quality
            if (
                quality is Quality.Bad_CommunicationError
                and bad_after is not None
                and old.source_time is not None
                and old.value is not None
                and now - old.source_time < bad_after
            ):
                new_q = Quality.Uncertain_LastUsableValue
            if old.quality is new_q:
                continue
            tv = TagValue(old.value, new_q, old.source_time, now)
            self._values[key] = tv
            changes.append(TagChange(key, tv))
        self._notify(changes)

    def _notify(self, changes: Sequence[TagChange]) -> None:
        if not changes:
            return
        for listener in list(self._listeners):
            try:
                listener.on_changes(changes)
            except Exception:  # a broken publisher must not stop polling
                log.exception("tag listener %r failed", listener)
