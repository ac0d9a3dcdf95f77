"""Reload as a difference: what did not change keeps polling, its connections and its sessions.

The proof is counted on the simulator: connections a server accepted, dials of a modem, sessions a
meter opened — across a reload that changes something else.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from site_builder import (
    dial_in_channel,
    group,
    meter,
    quality,
    running,
    site,
    tcp_channel,
    value,
)

from bridge.config.model import (
    ChannelConfig,
    IdentifyMethod,
    ListenerConfig,
    Origin,
    PollGroup,
    RegisterDef,
    SiteMapping,
    TagConfig,
)
from bridge.config.templates import builtin_templates
from bridge.polling.reload import diff_mappings
from bridge.polling.scheduler import PollScheduler
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import DialOutModem, TcpMeterServer
from bridge.tags import Quality, TagStore

pytestmark = pytest.mark.timeout(60)

IMEIS = ["351234567890121", "351234567890139", "351234567890147"]


def fresh_after(store: TagStore, key: str, moment: object) -> bool:
    tv = store.get(key)
    return (
        tv is not None
        and tv.quality is Quality.Good
        and tv.source_time is not None
        and tv.source_time > moment  # type: ignore[operator]
    )


# -- the difference itself ------------------------------------------------------------------------
def two_channel_site() -> SiteMapping:
    return site(
        [tcp_channel("gw1", 7001), tcp_channel("gw2", 7002)],
        [meter("a", "gw1", 1), meter("b", "gw2", 2)],
    )


def test_origins_and_descriptions_are_no_change() -> None:
    old = two_channel_site()
    moved = Origin("site.xml", 99)
    new = replace(
        old,
        source="other.xml",
        channels=tuple(replace(c, origin=moved, description="new text", group="Hall 2")
                       for c in old.channels),  # fmt: skip
        meters=tuple(replace(m, origin=moved, description="x", modbus_unit_id=9) for m in old.meters),
        poll_groups=tuple(replace(g, origin=moved) for g in old.poll_groups),
        tags=tuple(replace(t, origin=moved) for t in old.tags),
    )
    diff = diff_mappings(old, new)
    assert not diff, diff.summary()
    assert diff.summary() == "nothing that polling uses changed"


def test_changes_are_sorted_by_name() -> None:
    old = two_channel_site()
    new = replace(
        old,
        channels=(old.channels[0], replace(old.channels[1], response_timeout=2.0),
                  tcp_channel("gw3", 7003)),  # fmt: skip
        meters=(replace(old.meters[0], password=old.meters[0].password, bad_after=60.0),
                meter("c", "gw3", 3)),  # fmt: skip
        tags=(*old.tags[:1], TagConfig("frequency", "a", "frequency"), TagConfig("voltage", "c", "voltage")),
    )
    diff = diff_mappings(old, new)
    assert diff.channels.added == {"gw3"} and diff.channels.changed == {"gw2"}
    assert not diff.channels.removed
    assert diff.meters.changed == {"a"} and diff.meters.removed == {"b"}
    assert diff.meters.added == {"c"}
    assert diff.tags.added == {"a.frequency", "c.voltage"} and diff.tags.removed == {"b.voltage"}
    assert "channels changed: gw2" in diff.summary()


def test_a_changed_template_changes_its_meters() -> None:
    old = two_channel_site()
    templates = dict(builtin_templates())
    name = old.meters[0].template
    registers = dict(templates[name].registers)
    voltage = registers["voltage"]
    registers["voltage"] = RegisterDef(voltage.name, voltage.number, voltage.fmt, scale=0.5)
    templates[name] = replace(templates[name], registers=registers)
    diff = diff_mappings(old, replace(old, templates=templates))
    assert diff.meters.changed == {m.name for m in old.meters if m.template == name}


def test_a_changed_listener_restarts_its_dial_in_channels_only() -> None:
    gsm = ListenerConfig("gsm", port=7100)
    other = ListenerConfig("other", port=7101)
    old = site(
        [dial_in_channel("d1", "gsm", IMEIS[0]), dial_in_channel("d2", "other", IMEIS[1]),
         tcp_channel("t", 7002)],  # fmt: skip
        [meter("x", "d1", 1), meter("y", "d2", 1), meter("z", "t", 1)],
        listeners=[gsm, other],
    )
    new = replace(old, listeners=(replace(gsm, identify_timeout=3.0), other))
    diff = diff_mappings(old, new)
    assert diff.listeners.changed == {"gsm"}
    assert diff.channels.changed == {"d1"}
    assert not diff.meters
    # handed-over listeners are not the collector's business
    assert not diff_mappings(old, new, own_listeners=False)


# -- the scheduler follows changed groups only -----------------------------------------------------
async def test_scheduler_update_keeps_unchanged_jobs(no_leftovers, wait_until) -> None:
    fired: list[str] = []
    kept = PollGroup("kept", ("a",), ("voltage",), interval=60)
    changed = PollGroup("changed", ("a",), ("voltage",), interval=60)
    gone = PollGroup("gone", ("a",), ("voltage",), interval=60)
    scheduler = PollScheduler([kept, changed, gone], lambda g: fired.append(g.name))
    scheduler.start()
    try:
        await wait_until(lambda: len(fired) == 3, within=5, what="first run of every group")
        scheduler.update([
            replace(kept, origin=Origin("moved.xml", 40)),
            replace(changed, registers=("voltage", "frequency")),
            PollGroup("new", ("a",), ("voltage",), interval=60),
        ])  # fmt: skip
        await wait_until(lambda: len(fired) == 5, within=5, what="changed and new groups fire")
        assert sorted(fired[3:]) == ["changed", "new"]
        assert scheduler.fired == {"kept": 1, "changed": 2, "new": 1}
    finally:
        await scheduler.stop()


# -- a running collector over TCP -------------------------------------------------------------------
async def test_unchanged_channel_and_meters_keep_connection_and_sessions(
    no_leftovers, wait_until
) -> None:
    a, c, e, d = (SimulatedMeter("105", n) for n in (1, 3, 5, 4))
    b = SimulatedMeter("105", 2)
    async with TcpMeterServer(SimulatedBus([a, c, e, d])) as one, TcpMeterServer(
        SimulatedBus([b])
    ) as two:
        gw1, gw2 = tcp_channel("gw1", one.port), tcp_channel("gw2", two.port)
        old = site([gw1, gw2], [meter("a", "gw1", 1), meter("b", "gw2", 2),
                                meter("c", "gw1", 3), meter("e", "gw1", 5)], interval=0.2)  # fmt: skip
        new = site(
            [replace(gw1, origin=Origin("moved.xml", 12)), replace(gw2, response_timeout=0.4)],
            [meter("a", "gw1", 1), meter("b", "gw2", 2), meter("e", "gw1", 5, bad_after=120.0),
             meter("d", "gw1", 4)],  # fmt: skip
            groups=[group("fast", ["a", "b", "e", "d"], ["voltage"], 0.2),
                    group("extra", ["a"], ["frequency"], 0.2)],  # fmt: skip
        )
        async with running(old) as (collector, store):
            keys = ("a.voltage", "b.voltage", "c.voltage", "e.voltage")
            await wait_until(lambda: all(quality(store, k) is Quality.Good for k in keys), within=10)
            accepted_one, accepted_two = one.accepted, two.accepted
            sessions = {"a": a.counters.sessions_opened, "e": e.counters.sessions_opened,
                        "b": b.counters.sessions_opened}  # fmt: skip
            worker_gw1, poller_a = collector.workers["gw1"], collector.pollers["a"]
            poller_e = collector.pollers["e"]
            fast_fired = collector.triggers["fast"]
            moment = store.get("a.voltage").source_time  # type: ignore[union-attr]

            await collector.apply(new)
            # removed keys are gone at once, new ones wait for their first value
            assert store.get("c.voltage") is None and store.get("c.diag.state") is None
            assert quality(store, "d.voltage") is Quality.Bad_WaitingForInitialData
            assert quality(store, "a.frequency") is Quality.Bad_WaitingForInitialData
            assert quality(store, "a.voltage") is Quality.Good  # kept with its value

            for key in ("a.voltage", "a.frequency", "b.voltage", "d.voltage", "e.voltage"):
                await wait_until(lambda k=key: fresh_after(store, k, moment), within=10, what=key)  # type: ignore[misc]
            await wait_until(lambda: collector.triggers["fast"] >= fast_fired + 3, within=5)

            # gw1 and meter a did not change: same connection, same session, same objects
            assert one.accepted == accepted_one
            assert a.counters.sessions_opened == sessions["a"]
            assert collector.workers["gw1"] is worker_gw1 and collector.pollers["a"] is poller_a
            # the fast group only gained meters: its job (and its count) went on
            assert collector.triggers["fast"] > fast_fired
            # gw2 changed: reconnected; b's session there is new
            assert two.accepted == accepted_two + 1
            assert b.counters.sessions_opened == sessions["b"] + 1
            # e changed: a new poller and a new session, on the same connection
            assert collector.pollers["e"] is not poller_e
            assert e.counters.sessions_opened == sessions["e"] + 1
            # c was removed: its session closed, and it is no longer asked anything
            assert c.session_level is None
            c_requests = c.counters.requests
            await wait_until(lambda: collector.triggers["fast"] >= fast_fired + 5, within=5)
            assert c.counters.requests == c_requests
            assert store.get("c.voltage") is None


async def test_a_retired_poll_in_flight_does_not_bring_keys_back(no_leftovers, wait_until) -> None:
    slow, kept = SimulatedMeter("105", 1), SimulatedMeter("105", 2)
    async with TcpMeterServer(SimulatedBus([slow, kept])) as server:
        channel = tcp_channel("gw", server.port, response_timeout=1.0)
        old = site([channel], [meter("slow", "gw", 1), meter("kept", "gw", 2)], interval=0.2)
        new = site([channel], [meter("kept", "gw", 2)], interval=0.2)
        async with running(old) as (collector, store):
            await wait_until(lambda: quality(store, "slow.voltage") is Quality.Good, within=10)
            slow.faults.delay = 0.3  # the next answer comes late: a poll is on the bus
            requests = slow.counters.requests
            await wait_until(lambda: slow.counters.requests > requests, within=5)
            await collector.apply(new)
            assert store.get("slow.voltage") is None
            fired = collector.triggers["fast"]
            await wait_until(lambda: collector.triggers["fast"] >= fired + 3, within=5)
            assert store.get("slow.voltage") is None and store.get("slow.diag.requests") is None
            assert quality(store, "kept.voltage") is Quality.Good


async def test_a_hand_built_mapping_with_an_unknown_channel_changes_nothing(
    no_leftovers, wait_until
) -> None:
    sim = SimulatedMeter("105", 1)
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        mapping = site([tcp_channel("gw", server.port)], [meter("m", "gw", 1)], interval=0.2)
        broken = replace(mapping, meters=(*mapping.meters, meter("x", "nowhere", 2)))
        async with running(mapping) as (collector, store):
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            worker = collector.workers["gw"]
            with pytest.raises(ValueError, match="meter x names unknown channel 'nowhere'"):
                await collector.apply(broken)
            assert collector.mapping is mapping and collector.workers["gw"] is worker
            requests = sim.counters.requests
            await wait_until(lambda: sim.counters.requests > requests + 2, within=5)


# -- dial-in: unchanged modules stay attached ----------------------------------------------------------
def gsm_listener(port: int, identify_timeout: float = 2.0) -> ListenerConfig:
    return ListenerConfig(
        "gsm", host="127.0.0.1", port=port, method=IdentifyMethod.IMEI,
        identify_timeout=identify_timeout,
    )  # fmt: skip


def dial_in_site(port: int, channels: list[ChannelConfig], identify_timeout: float = 2.0) -> SiteMapping:
    names = [c.name for c in channels]
    return site(
        channels,
        [meter(f"m_{n}", n, 1) for n in names],
        interval=0.2,
        listeners=[gsm_listener(port, identify_timeout)],
    )


async def test_dial_in_modules_of_unchanged_channels_stay_attached(
    free_port, no_leftovers, wait_until
) -> None:
    port = free_port()
    sims = [SimulatedMeter("105", 1) for _ in IMEIS]
    d1, d2, d3 = (dial_in_channel(f"d{i + 1}", "gsm", imei) for i, imei in enumerate(IMEIS))
    old = dial_in_site(port, [d1, d2, d3])
    changed = dial_in_site(port, [d1, replace(d2, response_timeout=0.4)])  # d3 removed
    async with contextlib.AsyncExitStack() as stack:
        collector, store = await stack.enter_async_context(running(old))
        modems = []
        for sim, imei in zip(sims, IMEIS, strict=True):
            modem = DialOutModem(SimulatedBus([sim]), "127.0.0.1", port, imei, reconnect_delay=0.1)
            modems.append(await stack.enter_async_context(modem))
        keys = ("m_d1.voltage", "m_d2.voltage", "m_d3.voltage")
        await wait_until(lambda: all(quality(store, k) is Quality.Good for k in keys), within=10)
        listener = collector.listeners["gsm"]
        dials = [m.dials for m in modems]
        sessions = [s.counters.sessions_opened for s in sims]
        unknown = listener.stats.unknown

        await collector.apply(changed)
        await wait_until(lambda: modems[1].dials > dials[1], within=10, what="d2 dials again")
        await wait_until(lambda: listener.stats.unknown > unknown, within=10, what="d3 refused")
        moment = store.get("m_d2.voltage").source_time  # type: ignore[union-attr]
        await wait_until(lambda: fresh_after(store, "m_d2.voltage", moment), within=10)
        assert collector.listeners["gsm"] is listener  # the listener went on listening
        assert modems[0].dials == dials[0] and sims[0].counters.sessions_opened == sessions[0]
        assert value(store, "channel:d1.reconnects") == 0
        assert store.get("m_d3.voltage") is None and store.get("channel:d3.connected") is None

        # a changed listener restarts with its channels: every module dials in again
        await collector.apply(dial_in_site(port, list(changed.channels), identify_timeout=3.0))
        assert collector.listeners["gsm"] is not listener
        await wait_until(lambda: modems[0].dials > dials[0], within=10, what="d1 dials again")
        moment = store.get("m_d1.voltage").source_time  # type: ignore[union-attr]
        await wait_until(lambda: fresh_after(store, "m_d1.voltage", moment), within=10)
