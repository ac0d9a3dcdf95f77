"""StoreRecorder: a TagStore listener that stores readings, and restores them on start.

Which tags are stored (``stored_tags``): ``TagConfig.store`` when given, else the ``store`` of a
poll group that reads the tag's register on its meter, else the register's default (energy
registers are stored, the others are not). Energy registers fall in the ``energy`` retention
class, everything else in ``instant``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bridge.config.model import SiteMapping, TagConfig
from bridge.storage.model import Reading, ReadingStore, StorageError, TagClass
from bridge.tags.model import Quality, TagChange, TagValue
from bridge.tags.store import TagStore

log = logging.getLogger(__name__)


def _is_stored(mapping: SiteMapping, tag: TagConfig) -> bool:
    if tag.store is not None:
        return tag.store
    for group in mapping.poll_groups:
        if group.store is not None and tag.meter in group.meters and tag.register in group.registers:
            return group.store
    meter = mapping.meter(tag.meter)
    return mapping.register_of(meter, tag.register).energy


def stored_tags(mapping: SiteMapping) -> dict[str, TagClass]:
    """TagStore key → retention class of every tag whose readings are stored."""
    stored: dict[str, TagClass] = {}
    for tag in mapping.tags:
        if _is_stored(mapping, tag):
            energy = mapping.register_of(mapping.meter(tag.meter), tag.register).energy
            stored[tag.key] = TagClass.ENERGY if energy else TagClass.INSTANT
    return stored


class StoreRecorder:
    """Submits every Good reading of a stored tag to a ``ReadingStore`` (never blocks the loop).

    ``mapping`` is a SiteMapping or, directly, a key → retention class mapping (tests, tools).
    Register it with ``tag_store.add_listener(recorder)`` after ``await recorder.restore(...)``.
    """

    def __init__(
        self,
        reading_store: ReadingStore,
        mapping: SiteMapping | Mapping[str, TagClass],
    ) -> None:
        self._store = reading_store
        self._classes: dict[str, TagClass] = (
            stored_tags(mapping) if isinstance(mapping, SiteMapping) else dict(mapping)
        )

    @property
    def stored_keys(self) -> frozenset[str]:
        """Keys of the stored tags."""
        return frozenset(self._classes)

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Queue the Good readings of stored tags, grouped by retention class."""
        by_class: dict[TagClass, list[Reading]] = {}
        for change in changes:
            tag_class = self._classes.get(change.key)
            tv = change.value
            if (
                tag_class is None
                or tv.quality is not Quality.Good
                or tv.value is None
                or tv.source_time is None
            ):
                continue
            by_class.setdefault(tag_class, []).append(
                Reading(change.key, tv.value, tv.quality, tv.source_time)
            )
        for tag_class, rows in by_class.items():
            self._store.submit(rows, tag_class)

    async def restore(self, tag_store: TagStore) -> int:
        """Put the last stored value of every stored tag back into ``tag_store``.

        The value keeps its original meter read time and gets Uncertain_LastUsableValue until
        a fresh poll replaces it (DESIGN.md rule 4: a stale value is never shown as fresh).
        Returns the number of restored tags; a storage failure is logged and restores nothing.
        """
        try:
            last = await self._store.last_values(sorted(self._classes))
        except StorageError as exc:
            log.error("cannot restore last values: %s", exc)
            return 0
        now = datetime.now(UTC)
        restored: dict[str, TagValue] = {}
        for key, reading in last.items():
            current = tag_store.get(key)
            if current is not None and current.source_time is not None:
                if current.source_time >= reading.source_time:
                    continue  # a poll already brought a newer value
            restored[key] = TagValue(
                reading.value, Quality.Uncertain_LastUsableValue, reading.source_time, now
            )
        tag_store.set_values(restored)
        if restored:
            log.info("restored the last stored value of %d tags", len(restored))
        return len(restored)
