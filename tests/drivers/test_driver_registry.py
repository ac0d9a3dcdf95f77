"""Driver registry: built-in names, entry points, clear errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from bridge.drivers import registry
from bridge.drivers.milur import MilurDriver


def test_milur_is_built_in() -> None:
    assert registry.driver_class("milur") is MilurDriver
    assert "milur" in registry.available_drivers()


def test_unknown_driver_lists_the_known_ones() -> None:
    with pytest.raises(registry.UnknownDriver, match=r"'spodes'.*milur"):
        registry.driver_class("spodes")


def test_entry_point_drivers_are_found_and_imported_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = EntryPoint("fake", "collections:OrderedDict", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [fake] if group == fake.group else [])
    assert registry.available_drivers() == ["milur", "fake"]
    import collections

    assert registry.driver_class("fake") is collections.OrderedDict
