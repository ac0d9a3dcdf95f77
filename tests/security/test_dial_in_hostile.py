"""The dial-in listener of a running bridge under hostile connections (scaled down in time).

Slow-loris connections, floods beyond ``max-unidentified``/``max-connections`` and oversized
garbage: the limits hold, buffers stay bounded, nothing else of the bridge suffers, and a
legitimate module (a simulated GSM modem that dials in and answers the IMEI request) still gets
in and is polled once the flood is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faults.bridge_rig import (
    ChannelSpec,
    MeterSpec,
    SiteSpec,
    dial_in,
    healthy_and_moving,
    running_bridge,
    settled_census,
    tcp,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.model import ChannelConfig, ChannelKind, DialInSettings, IdentifyMethod, ListenerConfig
from bridge.simulator import DialOutModem, SimulatedBus, SimulatedMeter, TcpMeterServer
from bridge.transport.dial_in import DialInListener
from bridge.transport.stream import MAX_BUFFERED

pytestmark = [pytest.mark.timeout(90)]

IMEI = "356938035643809"
MAX_UNIDENTIFIED, MAX_CONNECTIONS = 4, 8
LISTENER = (
    '<listener name="gsm" host="127.0.0.1" port="0" identify="imei" identify-timeout="1.5" '
    f'max-unidentified="{MAX_UNIDENTIFIED}" max-connections="{MAX_CONNECTIONS}"/>'
)


def _spec(solo_port: int) -> SiteSpec:
    return SiteSpec(
        [
            ChannelSpec("gsm", dial_in(IMEI), [MeterSpec("d1", 1)]),
            ChannelSpec("solo", tcp(solo_port), [MeterSpec("h2", 7)]),
        ],
        listener=LISTENER,
    )


class Attackers:
    """Raw connections to the listener, closed at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        new = [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(n)]
        self.streams += new
        return new

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for _, writer in self.streams:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def attackers(port: int) -> AsyncIterator[Attackers]:
    a = Attackers(port)
    try:
        yield a
    finally:
        a.close()
        await asyncio.gather(*a.tasks, return_exceptions=True)


async def closed_by_bridge(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the bridge has closed the connection (whatever it sent before: the C3 request)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.mark.usefixtures("no_leftovers")
async def test_slow_loris_flood_and_garbage_then_a_module_gets_in(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.INFO)
    solo_meter, dialled = SimulatedMeter("105", 7), SimulatedMeter("105", 1)
    async with TcpMeterServer(SimulatedBus([solo_meter])) as solo:
        spec = _spec(solo.port)
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            assert app.collector is not None
            listener = app.collector.listeners["gsm"]
            await healthy_and_moving(app, spec.endpoint, ["h2"])
            baseline = await settled_census()
            loop = asyncio.get_running_loop()

            async with attackers(listener.port) as a:
                # slow-loris: one byte every 0.4 s never buys more than identify-timeout
                lorises = await a.connect(2)

                async def trickle(writer: asyncio.StreamWriter) -> None:
                    with contextlib.suppress(ConnectionError):
                        while True:
                            writer.write(b"\x35")
                            await writer.drain()
                            await asyncio.sleep(0.4)

                a.tasks += [asyncio.create_task(trickle(w)) for _, w in lorises]
                started = loop.time()
                for reader, _ in lorises:
                    assert await closed_by_bridge(reader, 5), "a slow-loris connection was kept"
                assert loop.time() - started < 1.5 + 2.0
                assert listener.stats.unidentified >= 2

                # a flood: three times the unidentified limit at once
                flood = await a.connect(3 * MAX_UNIDENTIFIED)
                await wait_for(_async(lambda: listener.stats.over_limit >= 2 * MAX_UNIDENTIFIED), 5,
                               "excess connections closed at once")
                assert listener.unidentified_count <= MAX_UNIDENTIFIED
                assert listener.connection_count <= MAX_CONNECTIONS
                # oversized garbage on one held connection: its buffer is capped
                _, writer = flood[-1]
                garbage = bytes(range(256)) * 4096  # 1 MiB per burst

                async def firehose() -> None:
                    with contextlib.suppress(ConnectionError):
                        for _ in range(8):
                            writer.write(garbage)
                            await writer.drain()

                a.tasks.append(asyncio.create_task(firehose()))
                for _ in range(10):
                    await asyncio.sleep(0.05)
                    held = [len(c._buffer) for c in listener._connections]
                    assert all(n <= MAX_BUFFERED for n in held), held
                # the rest of the bridge never noticed
                await healthy_and_moving(app, spec.endpoint, ["h2"])
                for reader, _ in flood:
                    assert await closed_by_bridge(reader, 5), "a flood connection was kept"

                # the legitimate module dials in (it redials while the flood holds the slots)
                modem = DialOutModem(SimulatedBus([dialled]), "127.0.0.1", listener.port, IMEI,
                                     reconnect_delay=0.2)
                async with modem:
                    await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                    assert dialled.counters.requests > 0
                    # more strangers while it is attached: the identified module stays
                    more = await a.connect(2 * MAX_CONNECTIONS)
                    for reader, _ in more:
                        assert await closed_by_bridge(reader, 5)
                    assert listener.connection_count <= MAX_CONNECTIONS
                    await healthy_and_moving(app, spec.endpoint, ["d1", "h2"])
                    assert listener.stats.identified >= 1

            await wait_for(_async(lambda: listener.connection_count <= 1), 5, "attackers gone")
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads
    # rejections are logged once per peer address per interval, not once per connection
    rejections = [r for r in caplog.records
                  if r.name == "bridge.transport.dial_in" and r.levelno >= logging.WARNING]
    assert len(rejections) <= 3, [r.getMessage() for r in rejections]


def _async(predicate):  # noqa: ANN001, ANN202
    async def check() -> bool:
        return bool(predicate())

    return check


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from([IdentifyMethod.IMEI, IdentifyMethod.SERIAL_NUMBER]),
    payload=st.binary(min_size=1, max_size=600),
    chunk=st.integers(1, 64),
)
def test_random_bytes_on_a_real_listener_connection(method, payload: bytes, chunk: int) -> None:  # noqa: ANN001
    """Whatever a stranger sends in answer to the identification: closed, never attached."""

    async def run() -> None:
        config = ListenerConfig("gsm", host="127.0.0.1", port=0, method=method, identify_timeout=0.25)
        listener = DialInListener(config, log_interval=0.0)
        transport = listener.transport_for(
            ChannelConfig("c", ChannelKind.DIAL_IN, dial_in=DialInSettings("gsm", IMEI))
        )
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            try:
                await asyncio.wait_for(reader.read(64), 2)  # the identification request
                for i in range(0, len(payload), chunk):
                    writer.write(payload[i : i + chunk])
                await writer.drain()
                assert await closed_by_bridge(reader, 3), "stranger kept open"
            finally:
                writer.transport.abort()
            assert not transport.is_open
            assert listener.stats.identified == 0
            assert listener.stats.unidentified + listener.stats.unknown == 1
        finally:
            await listener.stop()

    asyncio.run(run())
