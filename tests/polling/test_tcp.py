"""Collector over TCP (GSM module in server mode, gateway): drops, dead meters, wrong passwords."""

from __future__ import annotations

import logging
import math

import pytest
from site_builder import meter, quality, running, site, tcp_channel, value

from bridge.config.model import Secret
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import Quality

pytestmark = pytest.mark.timeout(60)

#: requests a meter sees at first contact before its first register read: session + regs 32, 33, 68
FIRST_CONTACT = 4


async def test_server_mode_module_and_dropped_connection(no_leftovers, wait_until) -> None:
    sim = SimulatedMeter("107", 12)
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site([tcp_channel("gsm", server.port)], [meter("m", "gsm", 12)], interval=0.2)
        async with running(mapping) as (collector, store):
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            assert value(store, "channel:gsm.peer") == f"127.0.0.1:{server.port}"
            first = store.get("m.voltage")
            assert first is not None

            server.drop()  # the module cuts the connection
            await wait_until(lambda: server.accepted >= 2, within=10, what="reconnected")
            await wait_until(
                lambda: (tv := store.get("m.voltage")) is not None
                and tv.quality is Quality.Good
                and tv.source_time > first.source_time,  # type: ignore[operator]
                within=10,
                what="fresh values after reconnection",
            )
            assert value(store, "channel:gsm.reconnects") >= 1  # type: ignore[operator]
            assert value(store, "channel:gsm.connected") is True
            assert value(store, "m.diag.state") == "ok"


async def test_server_down_means_not_connected(free_port, no_leftovers, wait_until) -> None:
    port = free_port()
    mapping = site([tcp_channel("gsm", port)], [meter("m", "gsm", 3)], interval=0.2)
    async with running(mapping) as (collector, store):
        await wait_until(
            lambda: quality(store, "m.voltage") is Quality.Bad_NotConnected, within=5
        )
        assert value(store, "m.diag.state") == "not_connected"
        assert value(store, "channel:gsm.connected") is False
        # the module comes up on that port: the channel connects on its backoff
        async with TcpMeterServer(SimulatedBus([SimulatedMeter("105", 3)]), port=port):
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            assert value(store, "channel:gsm.connected") is True


async def test_gateway_with_five_meters(no_leftovers, wait_until) -> None:
    addresses = [1, 2, 3, 200, 49932]  # the last one needs the 4-byte address form (§2)
    sims = [SimulatedMeter("105", a) for a in addresses]
    async with TcpMeterServer(SimulatedBus(sims)) as server:
        meters = [meter(f"m{a}", "gateway", a) for a in addresses]
        mapping = site(
            [tcp_channel("gateway", server.port)],
            meters,
            registers=("voltage", "energy_active_import_total"),
            interval=0.3,
        )
        async with running(mapping) as (collector, store):
            keys = [f"m{a}.{r}" for a in addresses for r in ("voltage", "energy_active_import_total")]
            await wait_until(
                lambda: all(quality(store, k) is Quality.Good for k in keys), within=10
            )
            for a, sim in zip(addresses, sims, strict=True):
                assert value(store, f"m{a}.diag.serial_number") == sim.serial_number
                assert sim.counters.requests >= FIRST_CONTACT + 2
            assert server.accepted == 1  # one socket carries every meter


async def test_dead_meter_is_demoted_and_gets_only_its_share(
    caplog, no_leftovers, wait_until
) -> None:
    caplog.set_level(logging.INFO)
    sims = {name: SimulatedMeter("105", a) for name, a in (("a", 1), ("dead", 2), ("c", 3))}
    sims["dead"].faults.silent = True
    async with TcpMeterServer(SimulatedBus(sims.values())) as server:
        mapping = site(
            [tcp_channel("gw", server.port, response_timeout=0.08)],
            [meter(n, "gw", s.address) for n, s in sims.items()],
            interval=0.2,
        )
        async with running(mapping, demote_after=3, max_skip=4) as (collector, store):
            await wait_until(lambda: collector.triggers["fast"] >= 20, within=30)
            fired = collector.triggers["fast"]
            dead_state = value(store, "dead.diag.state")
            dead_quality = quality(store, "dead.voltage")
            dead_failures = value(store, "dead.diag.consecutive_failures")
            dead_timeouts = value(store, "dead.diag.timeouts")
        # triggers 1-3 poll it (failing, failing, demoted); then one in 2, then one in 4 (cap)
        polls = [t for t in range(1, fired + 1) if t <= 3 or (t >= 5 and (t - 5) % 4 == 0)]
        expected = len(polls)
        dead_requests = sims["dead"].counters.requests  # one session attempt per poll (retries 0)
        assert expected - 1 <= dead_requests <= expected
        assert dead_timeouts == dead_failures == dead_requests
        assert dead_state == "demoted"
        assert dead_quality is Quality.Bad_CommunicationError  # never had a value
        for name in ("a", "c"):
            reads = sims[name].counters.requests - FIRST_CONTACT
            assert reads >= fired - 1, f"healthy meter {name} missed cycles: {reads}/{fired}"
            assert quality(store, f"{name}.voltage") is Quality.Good
            assert value(store, f"{name}.diag.state") == "ok"
        assert dead_requests < math.ceil(fired / 2)
        # one line when it failed, nothing per failure
        failed_lines = [r for r in caplog.records if "dead" in r.getMessage()
                        and r.levelno >= logging.WARNING]
        assert len(failed_lines) == 1, [r.getMessage() for r in failed_lines]


async def test_wrong_password_one_attempt_then_reset(caplog, no_leftovers, wait_until) -> None:
    caplog.set_level(logging.DEBUG)
    sim = SimulatedMeter("105", 5)  # factory password FF FF FF FF FF FF
    wrong = b"123456"
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site(
            [tcp_channel("gsm", server.port)],
            [meter("m", "gsm", 5, password=Secret(wrong))],
            interval=0.15,
        )
        async with running(mapping) as (collector, store):
            await wait_until(lambda: value(store, "m.diag.state") == "auth_failed", within=10)
            await wait_until(lambda: collector.triggers["fast"] >= 6, within=10)
            assert sim.counters.wrong_passwords == 1  # exactly one session attempt, no retries
            assert sim.counters.sessions_opened == 0
            assert sim.counters.requests == 1
            assert collector.meter_state("m") == "auth_failed"
            assert quality(store, "m.voltage") is Quality.Bad_ConfigurationError
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "m" in errors[0].getMessage()

            # the operator fixes the meter's password and resets the meter
            sim.set_password(wrong)
            collector.reset_meter("m")
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            assert sim.counters.sessions_opened == 1
            assert value(store, "m.diag.state") == "ok"
    text = caplog.text + repr(mapping)
    assert "123456" not in text and wrong.hex() not in text
