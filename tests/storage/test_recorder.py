"""StoreRecorder: which tags are stored, only Good readings, restore with the original time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config.model import SiteMapping
from bridge.storage import SqliteReadingStore, StoreRecorder, TagClass, stored_tags
from bridge.tags import Quality, TagStore

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

READ_AT = datetime(2026, 11, 20, 8, 0, 5, 250000, tzinfo=UTC)


def test_stored_tags_follow_tag_group_and_register_defaults(mapping: SiteMapping) -> None:
    assert stored_tags(mapping) == {
        "m1.ap": TagClass.ENERGY,  # energy register: stored by default
        "m1.am": TagClass.ENERGY,
        "m1.rp": TagClass.ENERGY,  # tag says store
        "m1.i": TagClass.INSTANT,  # its poll group says store
        "m2.u": TagClass.INSTANT,  # tag says store
    }  # m1.u (not energy, no setting) and m2.ap (store=False) are not stored


async def test_only_good_readings_of_stored_tags_are_stored(
    mapping: SiteMapping, store: SqliteReadingStore
) -> None:
    tags = TagStore()
    recorder = StoreRecorder(store, mapping)
    tags.define(["m1.ap", "m1.u", "m1.i", "m2.ap", "m2.u"])  # Bad_WaitingForInitialData: skipped
    tags.add_listener(recorder)
    tags.set_good({"m1.ap": 100.0, "m1.u": 230.1, "m1.i": 5.0, "m2.ap": 7.0}, READ_AT)
    later = READ_AT + timedelta(minutes=1)
    tags.set_failed(["m1.ap", "m1.i"], Quality.Bad_CommunicationError, timedelta(days=1))
    tags.set_failed(["m2.u"], Quality.Bad_NotConnected)
    tags.set_good({"m1.ap": 100.5}, later)
    await store.flush()

    assert await store.keys() == ["m1.ap", "m1.i"]
    span = (READ_AT - timedelta(hours=1), READ_AT + timedelta(hours=1))
    ap = await store.history("m1.ap", *span)
    assert [(r.value, r.quality, r.source_time) for r in ap] == [
        (100.0, Quality.Good, READ_AT),
        (100.5, Quality.Good, later),
    ]
    assert [r.value for r in await store.history("m1.i", *span)] == [5.0]


async def test_restore_after_restart_is_uncertain_with_original_time(
    mapping: SiteMapping, tmp_path: Path
) -> None:
    path = tmp_path / "r.sqlite3"
    first = SqliteReadingStore(path)
    await first.open()
    tags = TagStore()
    tags.add_listener(StoreRecorder(first, mapping))
    tags.set_good({"m1.ap": 1234.56, "m1.i": 4.5, "m1.u": 231.0}, READ_AT)
    await first.close()

    second = SqliteReadingStore(path)
    await second.open()
    try:
        fresh = TagStore()
        fresh.define(["m1.ap", "m1.i", "m1.u", "m2.u"])
        restored = await StoreRecorder(second, mapping).restore(fresh)
    finally:
        await second.close()
    assert restored == 2
    for key, value in (("m1.ap", 1234.56), ("m1.i", 4.5)):
        tv = fresh.get(key)
        assert tv is not None
        assert (tv.value, tv.quality, tv.source_time) == (value, Quality.Uncertain_LastUsableValue, READ_AT)
    # never stored: still waiting for its first poll
    assert fresh.get("m1.u").quality is Quality.Bad_WaitingForInitialData  # type: ignore[union-attr]
    assert fresh.get("m2.u").value is None  # type: ignore[union-attr]


async def test_restore_does_not_overwrite_a_newer_poll(
    mapping: SiteMapping, store: SqliteReadingStore
) -> None:
    recorder = StoreRecorder(store, mapping)
    tags = TagStore()
    tags.add_listener(recorder)
    tags.set_good({"m1.ap": 1.0, "m1.am": 2.0}, READ_AT)
    await store.flush()
    assert await recorder.restore(tags) == 0  # the TagStore already holds these very values
    restarted = TagStore()
    restarted.define(["m1.ap", "m1.am"])
    restarted.set_good({"m1.ap": 9.0}, READ_AT + timedelta(seconds=30))  # a poll was quicker
    assert await recorder.restore(restarted) == 1
    assert restarted.get("m1.ap").value == 9.0  # type: ignore[union-attr]
    assert restarted.get("m1.ap").quality is Quality.Good  # type: ignore[union-attr]
    am = restarted.get("m1.am")
    assert am is not None and am.quality is Quality.Uncertain_LastUsableValue and am.value == 2.0


async def test_recorder_with_a_plain_class_map(store: SqliteReadingStore) -> None:
    recorder = StoreRecorder(store, {"x.e": TagClass.ENERGY})
    assert recorder.stored_keys == frozenset({"x.e"})
    tags = TagStore()
    tags.add_listener(recorder)
    tags.set_good({"x.e": 5, "x.other": 6}, datetime.now(UTC))
    await store.flush()
    assert await store.keys() == ["x.e"]
