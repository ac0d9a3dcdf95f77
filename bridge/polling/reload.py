"""What a configuration reload changes for polling: the difference of two site mappings.

``diff_mappings(old, new)`` compares the parts polling runs on — dial-in listeners, channels,
meters (with their templates), poll groups and tags — by name, and sorts each name into added,
removed or changed. Everything else stays: an unchanged channel keeps its connection, an
unchanged meter keeps its poller (its session and its health), an unchanged listener keeps its
dial-in modules attached.

What counts as a change:

- the ``origin`` (file and line) of an element never does: adding a line at the top of a mapping
  moves every element below it, and nothing needs a restart for that;
- fields that polling does not read never do either: a channel's ``description`` and ``group``
  (OPC UA folders), a meter's ``description`` and ``modbus_unit_id`` (publishers' business);
- a dial-in channel whose listener is added, removed or changed is changed (its transport belongs
  to that listener);
- a meter whose template changed is changed (the driver reads registers from the template).

This module is pure: it builds no objects and does no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config.model import ChannelConfig, SiteMapping, TagConfig

#: fields that never count as a change (see the module docstring)
_IGNORED_ALWAYS = frozenset({"origin"})
_IGNORED_CHANNEL = frozenset({"description", "group"})
_IGNORED_METER = frozenset({"description", "modbus_unit_id"})


def fingerprint(value: object, ignore: frozenset[str] = frozenset()) -> Hashable:
    """A comparable form of a configuration value without ``origin`` (and the ``ignore`` fields).

    Dataclasses become tuples of (field, value), mappings sorted tuples; nested values are
    handled alike, so a ``RegisterDef`` inside a ``Template`` loses its origin too.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        skip = _IGNORED_ALWAYS | ignore
        return (
            type(value).__name__,
            tuple(
                (f.name, fingerprint(getattr(value, f.name)))
                for f in dataclasses.fields(value)
                if f.name not in skip
            ),
        )
    if isinstance(value, Mapping):
        return tuple(sorted(((str(k), fingerprint(v)) for k, v in value.items()), key=_first))
    if isinstance(value, tuple | list):
        return tuple(fingerprint(v) for v in value)
    if isinstance(value, enum.Enum):
        return (type(value).__name__, value.value)
    assert isinstance(value, Hashable), f"unhashable configuration value {value!r}"
    return value


def _first(item: tuple[str, Any]) -> str:
    return item[0]


@dataclass(frozen=True, slots=True)
class NameDiff:
    """Names added, removed and changed between two collections of named elements."""

    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    changed: frozenset[str] = frozenset()

    @property
    def replaced(self) -> frozenset[str]:
        """Names whose running object goes away: removed or changed."""
        return self.removed | self.changed

    @property
    def created(self) -> frozenset[str]:
        """Names that need a new running object: added or changed."""
        return self.added | self.changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, what: str) -> list[str]:
        """Log phrases such as ``"channels added: c2, c3"``."""
        parts = []
        for verb, names in (("added", self.added), ("removed", self.removed),
                            ("changed", self.changed)):  # fmt: skip
            if names:
                parts.append(f"{what} {verb}: {', '.join(sorted(names))}")
        return parts


def diff_names(
    old: Mapping[str, Hashable], new: Mapping[str, Hashable], also_changed: Iterable[str] = ()
) -> NameDiff:
    """Compare two name → fingerprint maps; ``also_changed`` names (present in both) count as changed."""
    forced = set(also_changed)
    return NameDiff(
        added=frozenset(new.keys() - old.keys()),
        removed=frozenset(old.keys() - new.keys()),
        changed=frozenset(n for n in old.keys() & new.keys() if old[n] != new[n] or n in forced),
    )


@dataclass(frozen=True, slots=True)
class MappingDiff:
    """The difference between the running mapping and a new one, as polling sees it."""

    listeners: NameDiff
    channels: NameDiff
    meters: NameDiff
    poll_groups: NameDiff
    tags: NameDiff  # by TagStore key

    def __bool__(self) -> bool:
        return any((self.listeners, self.channels, self.meters, self.poll_groups, self.tags))

    def summary(self) -> str:
        """One line for the log: what the reload changes."""
        parts = [
            *self.listeners.describe("listeners"),
            *self.channels.describe("channels"),
            *self.meters.describe("meters"),
            *self.poll_groups.describe("poll groups"),
            *self.tags.describe("tags"),
        ]
        return "; ".join(parts) if parts else "nothing that polling uses changed"


def _listener_prints(mapping: SiteMapping) -> dict[str, Hashable]:
    return {lc.name: fingerprint(lc) for lc in mapping.listeners}


def _channel_prints(mapping: SiteMapping) -> dict[str, Hashable]:
    return {c.name: fingerprint(c, _IGNORED_CHANNEL) for c in mapping.channels}


def _meter_prints(mapping: SiteMapping) -> dict[str, Hashable]:
    return {
        m.name: (fingerprint(m, _IGNORED_METER), fingerprint(mapping.templates.get(m.template)))
        for m in mapping.meters
    }


def _listener_of(channel: ChannelConfig) -> str | None:
    return channel.dial_in.listener if channel.dial_in is not None else None


def diff_mappings(old: SiteMapping, new: SiteMapping, *, own_listeners: bool = True) -> MappingDiff:
    """What changes for polling when ``new`` replaces ``old``.

    ``own_listeners``: the collector runs the mapping's dial-in listeners (False when they were
    handed to it, and a listener difference is not its business).
    """
    listeners = (
        diff_names(_listener_prints(old), _listener_prints(new)) if own_listeners else NameDiff()
    )
    moved = listeners.replaced | listeners.added
    # a dial-in channel of a restarted listener restarts with it
    on_moved = {c.name for c in new.channels if _listener_of(c) in moved}
    channels = diff_names(_channel_prints(old), _channel_prints(new), on_moved)
    meters = diff_names(_meter_prints(old), _meter_prints(new))
    groups = diff_names(
        {g.name: fingerprint(g) for g in old.poll_groups},
        {g.name: fingerprint(g) for g in new.poll_groups},
    )
    tags = diff_names(_tag_prints(old.tags), _tag_prints(new.tags))
    return MappingDiff(listeners, channels, meters, groups, tags)


def _tag_prints(tags: Iterable[TagConfig]) -> dict[str, Hashable]:
    return {t.key: fingerprint(t) for t in tags}

