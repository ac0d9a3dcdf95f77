"""Driver registry: name → driver class, imported lazily (the python-can interface registry shape).

Built-in drivers are listed here as ``module:Class`` strings; third-party packages add theirs
through the ``milur_bridge.drivers`` entry point group, e.g. in their ``pyproject.toml``::

    [project.entry-points."milur_bridge.drivers"]
    spodes = "mypkg.spodes:SpodesDriver"

Nothing is imported until a driver is asked for by name.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from bridge.drivers.base import MeterDriverClass

ENTRY_POINT_GROUP = "milur_bridge.drivers"

#: built-in drivers: name → "module:attribute"
BUILTIN_DRIVERS: dict[str, str] = {
    "milur": "bridge.drivers.milur:MilurDriver",
}


class UnknownDriver(LookupError):
    """No driver of that name is built in or registered through entry points."""


def _entry_point_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_drivers() -> list[str]:
    """Names of every known driver, built-in first."""
    names = list(BUILTIN_DRIVERS)
    names += sorted(n for n in _entry_point_targets() if n not in BUILTIN_DRIVERS)
    return names


def driver_class(name: str) -> MeterDriverClass:
    """The driver class registered as ``name``; imported on first use.

    Raises ``UnknownDriver`` with the list of known names, or ``ImportError`` when the
    registered module cannot be imported.
    """
    target = BUILTIN_DRIVERS.get(name) or _entry_point_targets().get(name)
    if target is None:
        known = ", ".join(available_drivers())
        raise UnknownDriver(f"unknown meter driver {name!r} (known: {known})")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownDriver(f"meter driver {name!r} ({target}) is not a class")
    cls: MeterDriverClass = obj
    return cls
