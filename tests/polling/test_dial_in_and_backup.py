"""Dial-in GSM modules identified by IMEI on one listener, and meters with a backup channel."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from site_builder import dial_in_channel, listener, meter, quality, running, site, tcp_channel, value

from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import DialOutModem, TcpMeterServer
from bridge.tags import Quality, TagChange

pytestmark = pytest.mark.timeout(60)

IMEIS = ["351234567890121", "351234567890139", "351234567890147"]
STRANGER = "490154203237518"


async def test_dial_in_modules_identified_by_imei(no_leftovers, wait_until) -> None:
    sims = [SimulatedMeter("105", 1) for _ in IMEIS]
    mapping = site(
        [dial_in_channel(f"site{i}", "gsm", imei) for i, imei in enumerate(IMEIS)],
        [meter(f"m{i}", f"site{i}", 1) for i in range(len(IMEIS))],
        interval=0.2,
        listeners=[listener("gsm")],
    )
    stranger_sim = SimulatedMeter("105", 1)
    async with contextlib.AsyncExitStack() as stack:
        collector, store = await stack.enter_async_context(running(mapping))
        # until its module dials in and is identified, a dial-in channel is not connected
        await wait_until(
            lambda: all(quality(store, f"m{i}.voltage") is Quality.Bad_NotConnected
                        for i in range(len(IMEIS))),
            within=5,
        )
        assert value(store, "m0.diag.state") == "not_connected"
        assert value(store, "channel:site0.connected") is False

        port = collector.listeners["gsm"].port
        modems = []
        for sim, imei in zip(sims, IMEIS, strict=True):
            modem = DialOutModem(SimulatedBus([sim]), "127.0.0.1", port, imei, reconnect_delay=0.1)
            modems.append(await stack.enter_async_context(modem))
        stranger = DialOutModem(
            SimulatedBus([stranger_sim]), "127.0.0.1", port, STRANGER, reconnect=False
        )
        await stack.enter_async_context(stranger)

        await wait_until(
            lambda: all(quality(store, f"m{i}.voltage") is Quality.Good
                        for i in range(len(IMEIS))),
            within=10,
        )
        for i, (sim, imei) in enumerate(zip(sims, IMEIS, strict=True)):
            assert value(store, f"channel:site{i}.identity") == imei
            assert value(store, f"channel:site{i}.connected") is True
            assert str(value(store, f"channel:site{i}.peer")).startswith("127.0.0.1:")
            assert value(store, f"m{i}.diag.serial_number") == sim.serial_number
        await wait_until(lambda: collector.listeners["gsm"].stats.unknown >= 1, within=5)
        assert stranger_sim.counters.requests == 0  # the stranger never gets a meter's slot

        # a module loses its connection and dials in again: polling carries on over the new one
        before = store.get("m0.voltage")
        assert before is not None and before.source_time is not None
        modems[0].drop()
        await wait_until(lambda: modems[0].dials >= 2, within=10, what="modem dialled again")
        await wait_until(
            lambda: (tv := store.get("m0.voltage")) is not None
            and tv.quality is Quality.Good
            and tv.source_time > before.source_time,  # type: ignore[operator]
            within=10,
            what="fresh values after the module dialled in again",
        )
        assert value(store, "channel:site0.identity") == IMEIS[0]


class QualityLog:
    """Records every change of one key (a TagStore listener)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.qualities: list[Quality] = []

    def on_changes(self, changes: Sequence[TagChange]) -> None:
        self.qualities += [c.value.quality for c in changes if c.key == self.key]


async def test_backup_channel_serves_while_primary_is_down(
    caplog, no_leftovers, wait_until
) -> None:
    caplog.set_level(logging.INFO)
    sim = SimulatedMeter("107", 9)  # one meter reachable through two modems
    bus_a, bus_b = SimulatedBus([sim]), SimulatedBus([sim])
    async with TcpMeterServer(bus_a) as server_a, TcpMeterServer(bus_b) as server_b:
        port_a = server_a.port
        mapping = site(
            [tcp_channel("primary", port_a), tcp_channel("backup", server_b.port)],
            [meter("m", "primary", 9, backup_channel="backup")],
            interval=0.2,
        )
        async with running(mapping) as (collector, store):
            log = QualityLog("m.voltage")
            store.add_listener(log)
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=10)
            assert value(store, "m.diag.channel_in_use") == "primary"
            assert server_b.accepted == 1  # the backup channel is kept open, ready

            await server_a.stop()  # the primary modem goes away
            cut = datetime.now(UTC)
            await wait_until(lambda: value(store, "channel:primary.connected") is False, within=5)
            await wait_until(
                lambda: value(store, "m.diag.channel_in_use") == "backup"
                and (tv := store.get("m.voltage")) is not None
                and tv.source_time is not None
                and tv.source_time > cut,
                within=10,
                what="values through the backup channel",
            )
            assert quality(store, "m.voltage") is Quality.Good
            assert value(store, "m.diag.state") == "ok"

            # the primary comes back: probed, then used again
            async with TcpMeterServer(bus_a, port=port_a):
                await wait_until(
                    lambda: value(store, "m.diag.channel_in_use") == "primary", within=10
                )
                assert quality(store, "m.voltage") is Quality.Good
            store.remove_listener(log)
    # the value never went bad while one channel could serve it
    assert log.qualities and all(q is Quality.Good for q in log.qualities), log.qualities
    switches = [r.getMessage() for r in caplog.records if "now served through" in r.getMessage()]
    assert switches == [
        "meter m: now served through channel backup",
        "meter m: now served through channel primary",
    ]


async def test_backup_when_meter_fails_on_primary(no_leftovers, wait_until) -> None:
    on_a, on_b = SimulatedMeter("105", 4), SimulatedMeter("105", 4)
    async with TcpMeterServer(SimulatedBus([on_a])) as a, TcpMeterServer(SimulatedBus([on_b])) as b:
        mapping = site(
            [tcp_channel("primary", a.port, response_timeout=0.1), tcp_channel("backup", b.port)],
            [meter("m", "primary", 4, backup_channel="backup")],
            interval=0.2,
        )
        async with running(mapping, demote_after=2, max_skip=2) as (collector, store):
            await wait_until(lambda: value(store, "m.diag.channel_in_use") == "primary", within=10)
            on_a.faults.silent = True  # the meter's RS-485 pair behind the primary modem is cut
            await wait_until(lambda: value(store, "m.diag.channel_in_use") == "backup", within=10)
            await wait_until(lambda: quality(store, "m.voltage") is Quality.Good, within=5)
            reads_b = on_b.counters.requests
            await wait_until(lambda: on_b.counters.requests >= reads_b + 3, within=10)
            assert value(store, "m.diag.state") == "ok"
            assert on_a.counters.requests >= 2  # the primary is still probed
            on_a.faults.silent = False
            await wait_until(lambda: value(store, "m.diag.channel_in_use") == "primary", within=10)
