"""Diagnostic tags: the bridge's own view of meters and channels, always Good quality.

Writers collect the fields that changed and hand them to the TagStore in one batch
(``TagStore.set_values``), so a poll produces one change batch, not one per counter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bridge.tags import Quality, TagStore, TagValue
from bridge.tags.keys import (
    CHANNEL_DIAG_FIELDS,
    METER_DIAG_FIELDS,
    channel_diag_key,
    meter_diag_key,
)
from bridge.tags.model import Scalar
from bridge.tags.store import utcnow

_DEFAULTS: dict[type, Scalar] = {str: "", int: 0, float: 0.0, bool: False}


class DiagnosticsWriter:
    """Writes one object's diagnostic fields (a meter's or a channel's) to the store."""

    def __init__(
        self,
        store: TagStore,
        fields: Mapping[str, type],
        key_of: Callable[[str], str],
        initial: Mapping[str, Scalar] | None = None,
    ) -> None:
        self._store = store
        self._fields = fields
        self._key_of = key_of
        self._values: dict[str, Scalar] = {
            name: _DEFAULTS.get(kind, None) for name, kind in fields.items()
        }
        self._values.update(initial or {})

    @classmethod
    def for_meter(
        cls, store: TagStore, meter: str, initial: Mapping[str, Scalar] | None = None
    ) -> DiagnosticsWriter:
        """Writer of ``<meter>.diag.<field>`` keys."""
        return cls(store, METER_DIAG_FIELDS, lambda f: meter_diag_key(meter, f), initial)

    @classmethod
    def for_channel(
        cls, store: TagStore, channel: str, initial: Mapping[str, Scalar] | None = None
    ) -> DiagnosticsWriter:
        """Writer of ``channel:<channel>.<field>`` keys."""
        return cls(store, CHANNEL_DIAG_FIELDS, lambda f: channel_diag_key(channel, f), initial)

    def keys(self) -> list[str]:
        """Every key this writer owns."""
        return [self._key_of(name) for name in self._fields]

    def get(self, name: str) -> Scalar:
        """Current value of one field."""
        return self._values[name]

    def as_dict(self) -> dict[str, Scalar]:
        """A copy of every field."""
        return dict(self._values)

    def define(self) -> None:
        """Publish every field once (Good, with its initial value)."""
        now = utcnow()
        self._store.set_values(
            {self._key_of(n): TagValue(v, Quality.Good, now, now) for n, v in self._values.items()}
        )

    def update(self, values: Mapping[str, Scalar]) -> None:
        """Publish the fields whose value changed, in one batch."""
        changed = {n: v for n, v in values.items() if self._values.get(n) != v}
        if not changed:
            return
        for name in changed:
            if name not in self._fields:
                raise KeyError(f"unknown diagnostic field {name!r}")
        self._values.update(changed)
        now = utcnow()
        self._store.set_values(
            {self._key_of(n): TagValue(v, Quality.Good, now, now) for n, v in changed.items()}
        )
