"""ChannelWorker: one job at a time, coalescing by key, connection state and counters."""

from __future__ import annotations

import asyncio

import pytest
from site_builder import tcp_channel

from bridge.drivers.link import Link
from bridge.polling.worker import ChannelWorker
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import TagStore
from bridge.transport.tcp_client import TcpClientTransport

pytestmark = pytest.mark.timeout(30)


async def test_jobs_run_one_at_a_time_and_coalesce(no_leftovers, wait_until) -> None:
    async with TcpMeterServer(SimulatedBus([SimulatedMeter("105", 1)])) as server:
        channel = tcp_channel("gw", server.port)
        transport = TcpClientTransport(channel)
        events: list[bool] = []
        store = TagStore()
        worker = ChannelWorker(
            channel, transport, Link(transport, channel), store, lambda w, c: events.append(c)
        )
        release = asyncio.Event()
        running: list[str] = []
        done: list[str] = []
        overlap: list[int] = []  # jobs in progress when one starts

        def job(name: str):
            async def run(link: Link) -> None:
                running.append(name)
                overlap.append(len(running) - len(done))
                await release.wait()
                done.append(name)

            return run

        worker.start()
        try:
            assert worker.enqueue(("g", "m1"), job("m1"))
            assert worker.enqueue(("g", "m2"), job("m2"))
            await wait_until(lambda: running == ["m1"], within=5)
            # m1 is running and m2 queued: neither is queued twice
            assert not worker.enqueue(("g", "m1"), job("m1-again"))
            assert not worker.enqueue(("g", "m2"), job("m2-again"))
            assert worker.queued() == 2
            release.set()
            await wait_until(lambda: done == ["m1", "m2"], within=5)
            await wait_until(lambda: worker.queued() == 0, within=5)
            assert worker.enqueue(("g", "m1"), job("m1-later"))
            await wait_until(lambda: done == ["m1", "m2", "m1-later"], within=5)
            assert overlap == [1, 1, 1]  # never two at once on one bus
            assert worker.connected and events == [True]
            assert store.get("channel:gw.connected").value is True  # type: ignore[union-attr]
        finally:
            await worker.stop()
        assert not transport.is_open
