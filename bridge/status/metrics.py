"""Prometheus metrics, read from the TagStore's diagnostics at scrape time.

The channel and meter counters already live in the TagStore as diagnostics (bridge/tags/keys.py), so
the exporter does not keep a second copy of them: a custom collector turns the current diagnostics into
metric families on each scrape. Only what needs history (the round-trip histogram and the count of tag
updates) is observed as changes arrive, by a TagStore listener.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.config.model import SiteMapping
from bridge.tags import TagChange, TagStore
from bridge.tags.keys import METER_STATES, channel_diag_key, meter_diag_key

#: extra figures a publisher may report: name → (help, value); called at scrape time
ExtraSource = Callable[[], Mapping[str, float]]

_CHANNEL_COUNTERS = ("requests", "timeouts", "crc_errors", "garbage_bytes", "reconnects")


class _DiagnosticsCollector(Collector):
    """Turns TagStore diagnostics into metric families at scrape time."""

    def __init__(
        self,
        store: TagStore,
        mapping_ref: Callable[[], SiteMapping],
        extras: Callable[[], Mapping[str, float]],
    ) -> None:
        self._store = store
        self._mapping_ref = mapping_ref
        self._extras = extras

    def collect(self) -> Iterator[Metric]:
        mapping = self._mapping_ref()
        for field in _CHANNEL_COUNTERS:
            fam = CounterMetricFamily(
                f"milur_channel_{field}", f"Channel {field.replace('_', ' ')}", labels=["channel"]
            )
            for ch in mapping.channels:
                tv = self._store.get(channel_diag_key(ch.name, field))
                fam.add_metric([ch.name], float(tv.value) if tv and tv.value is not None else 0.0)
            yield fam
        connected = GaugeMetricFamily(
            "milur_channel_connected", "1 while the channel is connected", labels=["channel"]
        )
        for ch in mapping.channels:
            tv = self._store.get(channel_diag_key(ch.name, "connected"))
            connected.add_metric([ch.name], 1.0 if tv and tv.value else 0.0)
        yield connected
        states: Counter[str] = Counter()
        meter_fams = {
            f: CounterMetricFamily(f"milur_meter_{f}", f"Meter {f.replace('_', ' ')}", labels=["meter"])
            for f in ("requests", "timeouts", "crc_errors", "meter_errors")
        }
        for m in mapping.meters:
            tv = self._store.get(meter_diag_key(m.name, "state"))
            states[str(tv.value) if tv and tv.value else "waiting"] += 1
            for f, fam in meter_fams.items():
                v = self._store.get(meter_diag_key(m.name, f))
                fam.add_metric([m.name], float(v.value) if v and v.value is not None else 0.0)
        yield from meter_fams.values()
        by_state = GaugeMetricFamily("milur_meters", "Meters by state", labels=["state"])
        for state in METER_STATES:
            by_state.add_metric([state], float(states.get(state, 0)))
        yield by_state
        for name, value in sorted(self._extras().items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(name[: -len("_total")], name, value=value)
            else:
                yield GaugeMetricFamily(name, name, value=value)


class BridgeMetrics:
    """The bridge's Prometheus registry; also a TagStore listener for histograms and update counts."""

    def __init__(self, store: TagStore, mapping_ref: Callable[[], SiteMapping]) -> None:
        self.registry = CollectorRegistry()
        self._mapping_ref = mapping_ref
        self._extra_sources: list[ExtraSource] = []
        self._tag_updates = 0
        self._meter_channel: dict[str, str] = {}
        self.round_trip = Histogram(
            "milur_round_trip_seconds",
            "Request to reply time per channel",
            ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(_DiagnosticsCollector(store, mapping_ref, self._extras))
        store.add_listener(self)

    def add_source(self, source: ExtraSource) -> None:
        """Add figures from a publisher (e.g. OPC UA sessions, Modbus requests and exceptions)."""
        self._extra_sources.append(source)

    def _extras(self) -> dict[str, float]:
        out: dict[str, float] = {"milur_tag_updates_total": float(self._tag_updates)}
        for source in self._extra_sources:
            out.update(source())
        return out

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Count tag updates and observe round-trip times."""
        for change in changes:
            key = change.key
            if ".diag." not in key and not key.startswith("channel:"):
                self._tag_updates += 1
            elif key.endswith(".diag.round_trip_ms") and isinstance(change.value.value, int | float):
                meter = key[: -len(".diag.round_trip_ms")]
                channel = self._channel_of(meter)
                self.round_trip.labels(channel).observe(float(change.value.value) / 1000.0)

    def _channel_of(self, meter: str) -> str:
        if meter not in self._meter_channel:
            self._meter_channel = {m.name: m.channel for m in self._mapping_ref().meters}
        return self._meter_channel.get(meter, "")

    def render(self) -> bytes:
        """The exposition text."""
        return bytes(generate_latest(self.registry))
