"""End to end from a mapping file: the loader's SiteMapping drives the Collector."""

from __future__ import annotations

import pytest

from bridge.config.loader import load_mapping
from bridge.polling.collector import Collector
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import Quality, TagStore

pytestmark = pytest.mark.timeout(30)

MAPPING = """<?xml version="1.0" encoding="UTF-8"?>
<mapping name="e2e">
  <channel name="gateway" response-timeout="0.5" retries="0" reconnect-min="0.05"
           reconnect-max="0.2">
    <tcp host="127.0.0.1" port="{port}" connect-timeout="1"/>
    <meter name="house" model="307" address="49932" address-width="4">
      <tags all="true"/>
    </meter>
    <meter name="flat" model="107" address="21">
      <tags all="true"/>
    </meter>
  </channel>
  <poll-group name="fast" interval="300ms" meters="all" registers="frequency"/>
</mapping>
"""


async def test_collector_on_a_loaded_mapping(tmp_path, no_leftovers, wait_until) -> None:
    house, flat = SimulatedMeter("307", 49932, address_width=4), SimulatedMeter("107", 21)
    async with TcpMeterServer(SimulatedBus([house, flat])) as server:
        path = tmp_path / "site.xml"
        path.write_text(MAPPING.format(port=server.port), encoding="utf-8")
        mapping = load_mapping(path)
        store = TagStore()
        collector = Collector(mapping, store)
        await collector.start()
        try:
            freq = [t.key for t in mapping.tags if t.register == "frequency"]
            assert len(freq) == 2
            await wait_until(
                lambda: all(store.get(k).quality is Quality.Good for k in freq),  # type: ignore[union-attr]
                within=10,
            )
            for key in freq:
                assert 45.0 < store.get(key).value < 55.0  # type: ignore[operator,union-attr]
            assert store.get("house.diag.serial_number").value == house.serial_number  # type: ignore[union-attr]
        finally:
            await collector.stop()
