"""ChannelWorker priorities: live polls always run before queued background (archive) jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from archive_rig import sim, tcp_channel

from bridge.drivers.link import Link
from bridge.polling.worker import ChannelWorker
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import TagStore
from bridge.transport.tcp_client import TcpClientTransport

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("no_leftovers")]


async def test_live_jobs_go_first_and_background_fills_the_gaps(wait_until: Any) -> None:
    order: list[str] = []

    def job(name: str) -> Any:
        async def run(_link: Link) -> None:
            order.append(name)
            await asyncio.sleep(0)

        return run

    async with TcpMeterServer(SimulatedBus([sim(1)])) as server:
        channel = tcp_channel("ch", server.port)
        transport = TcpClientTransport(channel)
        worker = ChannelWorker(channel, transport, Link(transport, channel), TagStore())

        async def background_that_sees_a_live_poll(_link: Link) -> None:
            order.append("b0")
            worker.enqueue("b4", job("b4"), background=True)
            worker.enqueue("l3", job("l3"))  # a trigger fires while the archive job runs

        worker.enqueue("b0", background_that_sees_a_live_poll, background=True)
        for name in ("b1", "b2", "b3"):
            assert worker.enqueue(name, job(name), background=True)
        for name in ("l1", "l2"):
            assert worker.enqueue(name, job(name))
        assert not worker.enqueue("l1", job("l1"))  # still queued: coalesced
        worker.start()
        try:
            await wait_until(lambda: len(order) == 8, within=10)
        finally:
            await worker.stop()
    assert order == ["l1", "l2", "b0", "l3", "b1", "b2", "b3", "b4"]
