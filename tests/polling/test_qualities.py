"""Qualities: per-register errors, Uncertain then Bad after a failure, configuration errors, scale."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from site_builder import (
    dial_in_channel,
    group,
    listener,
    meter,
    quality,
    running,
    site,
    tcp_channel,
    value,
)

from bridge.config.model import RegisterDef, RegisterFormat, TagConfig
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import Quality

pytestmark = pytest.mark.timeout(60)


async def test_register_error_marks_only_its_tags(no_leftovers, wait_until) -> None:
    sim = SimulatedMeter("105", 1)
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site(
            [tcp_channel("gsm", server.port)],
            [meter("m", "gsm", 1)],
            registers=("voltage", "bogus", "frequency"),
            interval=0.2,
        )
        # a register the simulated meter does not have: it answers error 02 (§4)
        tpl = mapping.templates["milur-1phase"]
        bogus = RegisterDef("bogus", 250, RegisterFormat.U16, scale=0.1)
        templates = {**mapping.templates, tpl.name: dataclasses.replace(
            tpl, registers={**tpl.registers, "bogus": bogus})}
        mapping = dataclasses.replace(mapping, templates=templates)
        async with running(mapping) as (collector, store):
            await wait_until(
                lambda: quality(store, "m.voltage") is Quality.Good
                and quality(store, "m.frequency") is Quality.Good,
                within=10,
            )
            await wait_until(lambda: value(store, "m.diag.meter_errors") >= 2, within=10)  # type: ignore[operator]
            assert quality(store, "m.bogus") is Quality.Bad_CommunicationError
            assert value(store, "m.bogus") is None
            assert value(store, "m.diag.state") == "ok"
            assert 45.0 < float(value(store, "m.frequency")) < 55.0  # type: ignore[arg-type]


async def test_silent_meter_uncertain_while_young_then_bad(caplog, no_leftovers, wait_until) -> None:
    caplog.set_level(logging.INFO)
    young, old = SimulatedMeter("105", 1), SimulatedMeter("105", 2)
    async with TcpMeterServer(SimulatedBus([young, old])) as server:
        mapping = site(
            [tcp_channel("gw", server.port, response_timeout=0.1)],
            [meter("young", "gw", 1, bad_after=300.0), meter("old", "gw", 2, bad_after=0.05)],
            interval=0.2,
        )
        async with running(mapping) as (collector, store):
            await wait_until(
                lambda: quality(store, "young.voltage") is Quality.Good
                and quality(store, "old.voltage") is Quality.Good,
                within=10,
            )
            last = store.get("young.voltage")
            young.faults.silent = old.faults.silent = True
            await wait_until(
                lambda: quality(store, "young.voltage") is Quality.Uncertain_LastUsableValue
                and quality(store, "old.voltage") is Quality.Bad_CommunicationError,
                within=10,
            )
            held = store.get("young.voltage")
            assert held is not None and last is not None
            assert held.value is not None
            assert held.source_time is not None
            # the last value keeps its meter read time: a stale value is never made fresh
            assert value(store, "young.diag.state") in ("failing", "demoted")

            young.faults.silent = old.faults.silent = False
            await wait_until(
                lambda: quality(store, "young.voltage") is Quality.Good
                and quality(store, "old.voltage") is Quality.Good,
                within=10,
            )
            assert value(store, "young.diag.state") == "ok"
            assert value(store, "young.diag.consecutive_failures") == 0
    for name in ("young", "old"):
        lines = [r.getMessage() for r in caplog.records if f"meter {name}:" in r.getMessage()]
        assert sum("not answering" in m for m in lines) == 1, lines
        assert sum("answering again" in m for m in lines) == 1, lines


async def test_unknown_register_is_a_configuration_error(caplog, no_leftovers, wait_until) -> None:
    caplog.set_level(logging.ERROR)
    sim = SimulatedMeter("105", 1)
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site(
            [tcp_channel("gsm", server.port)],
            [meter("m", "gsm", 1)],
            groups=[group("g", ["m"], ["voltage", "voltage_a"], 0.2)],  # voltage_a: 3-phase only
        )
        async with running(mapping) as (collector, store):
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            await wait_until(lambda: collector.triggers["g"] >= 3, within=5)
            assert quality(store, "m.voltage_a") is Quality.Bad_ConfigurationError
    errors = [r.getMessage() for r in caplog.records if "voltage_a" in r.getMessage()]
    assert len(errors) == 1, errors


async def test_tag_offset_on_text_is_ignored_and_text_passes(no_leftovers, wait_until) -> None:
    sim = SimulatedMeter("105", 1, firmware="9.99")
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site(
            [tcp_channel("gsm", server.port)],
            [meter("m", "gsm", 1)],
            registers=("firmware",),
            extra_tags=[TagConfig("fw", "m", "firmware", scale=2.0, offset=1.0)],
            interval=0.2,
        )
        async with running(mapping) as (collector, store):
            await wait_until(lambda: quality(store, "m.fw") is Quality.Good, within=10)
            assert value(store, "m.fw") == "9.99"
            assert value(store, "m.firmware") == "9.99"


async def test_a_thousand_idle_dial_in_channels(no_leftovers, wait_until) -> None:
    n = 1000
    imeis = [f"35{i:013d}" for i in range(n)]
    mapping = site(
        [dial_in_channel(f"c{i}", "gsm", imei) for i, imei in enumerate(imeis)],
        [meter(f"m{i}", f"c{i}", 1) for i in range(n)],
        interval=0.5,
        listeners=[listener("gsm")],
    )
    baseline = len(asyncio.all_tasks())
    async with running(mapping) as (collector, store):
        await wait_until(
            lambda: quality(store, f"m{n - 1}.voltage") is Quality.Bad_NotConnected, within=20
        )
        await wait_until(lambda: collector.triggers["fast"] >= 2, within=5)
        # one sleeping task per channel, nothing more: no thread and no polling loop per channel
        assert len(asyncio.all_tasks()) - baseline <= n + 5
        assert all(w.queued() <= 1 for w in collector.workers.values())
        assert sum(quality(store, f"m{i}.voltage") is Quality.Bad_NotConnected for i in range(n)) == n


async def test_apply_new_mapping_keeps_values_and_drops_removed_keys(
    no_leftovers, wait_until
) -> None:
    a, b = SimulatedMeter("105", 1), SimulatedMeter("105", 2)
    async with TcpMeterServer(SimulatedBus([a, b])) as server:
        channel = tcp_channel("gw", server.port)
        both = site([channel], [meter("a", "gw", 1), meter("b", "gw", 2)], interval=0.2)
        only_a = site(
            [channel], [meter("a", "gw", 1)], registers=("voltage", "frequency"), interval=0.2
        )
        async with running(both) as (collector, store):
            await wait_until(lambda: quality(store, "b.voltage") is Quality.Good, within=10)
            kept = store.get("a.voltage")
            await collector.apply(only_a)
            assert store.get("b.voltage") is None and store.get("b.diag.state") is None
            current = store.get("a.voltage")
            assert current is not None and kept is not None
            assert current.source_time is not None and current.source_time >= kept.source_time  # type: ignore[operator]
            await wait_until(lambda: quality(store, "a.frequency") is Quality.Good, within=10)
            b_requests = b.counters.requests
            await wait_until(lambda: collector.triggers["fast"] >= 3, within=5)
            assert b.counters.requests == b_requests  # b is no longer polled


async def test_meter_on_unknown_channel_is_a_clear_error(no_leftovers) -> None:
    mapping = site([tcp_channel("gw", 9)], [meter("m", "nowhere", 1)])
    with pytest.raises(ValueError, match="meter m names unknown channel 'nowhere'"):
        async with running(mapping):
            pass
