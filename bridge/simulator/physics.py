"""Plausible electrical quantities for a simulated meter, moving over simulated time.

Voltage wanders around 230 V, the load current follows a slow cycle with noise, powers are
consistent with voltage, current and power factor, frequency stays near 50 Hz, and energy is
integrated from power so it only ever increases. Energy goes into the tariff that is active at
the simulated wall-clock time (T1 day 07:00–23:00, T2 night), and totals are the sums of tariffs.

Values are engineering values keyed by the register names of the templates (protocol notes §6).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

#: tariff zones (hour from, hour to) → tariff number; the rest of the day is T2 (night)
DAY_TARIFF_HOURS = (7, 23)

_SINGLE_TARIFFS = 4
_THREE_TARIFFS = 2
_PHASES = ("a", "b", "c")


def tariff_at(moment: datetime) -> int:
    """The tariff (1 = day, 2 = night) in force at a wall-clock time."""
    start, end = DAY_TARIFF_HOURS
    return 1 if start <= moment.hour < end else 2


@dataclass
class _Phase:
    """One phase's instantaneous state."""

    voltage: float = 230.0
    current: float = 0.0
    power_factor: float = 0.95

    @property
    def apparent(self) -> float:
        return self.voltage * self.current

    @property
    def active(self) -> float:
        return self.apparent * self.power_factor

    @property
    def reactive(self) -> float:
        return self.apparent * math.sqrt(max(0.0, 1.0 - self.power_factor**2))


@dataclass
class LoadModel:
    """Moving measurements of one meter; call :meth:`update` with the simulated time.

    ``phases`` is 1 (models 104/105/107) or 3 (305/307). ``seed`` makes runs repeatable.
    """

    phases: int
    seed: int = 0
    base_current: float = 8.0  # amperes, mean load per phase
    relay_off: bool = False  # load relay open: no current
    energy_import: list[float] = field(default_factory=list)  # kWh per tariff
    energy_reactive_import: float = 0.0  # kvarh
    energy_export: float = 0.0  # kWh
    energy_reactive_export: float = 0.0  # kvarh
    frequency: float = 50.0
    battery_voltage: float = 3.1
    tariff: int = 1
    period: float = 1.0  # seconds between fresh measurements
    _time: float | None = None
    _state: list[_Phase] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, not {self.phases}")
        self._rng = random.Random(self.seed)
        self._state = [_Phase() for _ in range(self.phases)]
        if not self.energy_import:
            tariffs = _SINGLE_TARIFFS if self.phases == 1 else _THREE_TARIFFS
            start = self._rng.uniform(1000.0, 20000.0)
            shares = [0.7, 0.3, 0.0, 0.0][:tariffs]
            self.energy_import = [round(start * s, 3) for s in shares]
            self.energy_reactive_import = round(start * 0.2, 3)
            self.energy_export = round(self._rng.uniform(0.0, 50.0), 3)
            self.energy_reactive_export = round(self._rng.uniform(0.0, 20.0), 3)

    # ------------------------------------------------------------------ time
    def update(self, now: float, wall: datetime) -> None:
        """Advance to simulated time ``now`` (seconds); integrate energy since the last update."""
        if self._time is None:
            self._time = now
            self._sample(now)
            return
        elapsed = now - self._time
        if elapsed <= 0:
            return
        self.tariff = tariff_at(wall)
        active_kw = sum(p.active for p in self._state) / 1000.0
        reactive_kvar = sum(p.reactive for p in self._state) / 1000.0
        hours = elapsed / 3600.0
        self.energy_import[self.tariff - 1] += active_kw * hours
        self.energy_reactive_import += reactive_kvar * hours
        self._time = now
        # Like a real meter, measurements refresh once per measuring period, so the values read
        # within one period are consistent with each other (P <= S, P = U * I * PF).
        if math.floor(now / self.period) != math.floor((now - elapsed) / self.period):
            self._sample(now)

    def resample(self) -> None:
        """Draw new instantaneous values at the current time (after the relay switched)."""
        self._sample(self._time or 0.0)

    def _sample(self, t: float) -> None:
        rng = self._rng
        # a slow daily-like cycle compressed to 10 minutes so a demo shows movement
        cycle = 0.6 + 0.4 * math.sin(2 * math.pi * t / 600.0)
        for i, phase in enumerate(self._state):
            shift = i * 2 * math.pi / 3
            phase.voltage = 230.0 + 4.0 * math.sin(2 * math.pi * t / 900.0 + shift)
            phase.voltage += rng.gauss(0.0, 0.4)
            if self.relay_off:
                phase.current = 0.0
            else:
                load = self.base_current * cycle * (1.0 + 0.1 * i)
                phase.current = max(0.05, load + rng.gauss(0.0, 0.2))
            phase.power_factor = min(0.999, max(0.8, 0.93 + rng.gauss(0.0, 0.02)))
        self.frequency = 50.0 + 0.04 * math.sin(2 * math.pi * t / 300.0) + rng.gauss(0.0, 0.005)

    # ------------------------------------------------------------------ values
    def values(self) -> dict[str, float]:
        """Engineering values by register name for the current state."""
        v: dict[str, float] = {
            "frequency": self.frequency,
            "battery_voltage": self.battery_voltage,
            "tariff_current": float(self.tariff),
            "relay_state": 1.0 if self.relay_off else 0.0,
            "energy_reactive_import_total": self.energy_reactive_import,
            "energy_active_export_total": self.energy_export,
            "energy_reactive_export_total": self.energy_reactive_export,
        }
        for n, kwh in enumerate(self.energy_import, start=1):
            v[f"energy_active_import_t{n}"] = kwh
        v["energy_active_import_total"] = sum(self.energy_import)
        if self.phases == 1:
            p = self._state[0]
            v.update(
                voltage=p.voltage,
                current=p.current,
                power_active=p.active,
                power_reactive=p.reactive,
                power_apparent=p.apparent,
                power_factor=p.power_factor,
            )
            return v
        for name, p in zip(_PHASES, self._state, strict=True):
            v[f"voltage_{name}"] = p.voltage
            v[f"current_{name}"] = p.current
            v[f"power_active_{name}"] = p.active
            v[f"power_reactive_{name}"] = p.reactive
            v[f"power_apparent_{name}"] = p.apparent
        v["power_active_total"] = sum(p.active for p in self._state)
        v["power_reactive_total"] = sum(p.reactive for p in self._state)
        v["power_apparent_total"] = sum(p.apparent for p in self._state)
        return v
