"""PollScheduler: APScheduler 3 triggers that only enqueue, coalescing missed runs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge.config.model import PollGroup
from bridge.polling.scheduler import PollScheduler

pytestmark = pytest.mark.timeout(20)


def block_loop(seconds: float) -> None:
    """Hold the event loop the way a long synchronous call would."""
    time.sleep(seconds)


async def test_interval_group_fires_at_start_and_repeats(no_leftovers, wait_until) -> None:
    fired: list[str] = []
    group = PollGroup("fast", ("m1",), ("voltage",), interval=0.1)
    sched = PollScheduler([group], lambda g: fired.append(g.name))
    sched.start()
    try:
        await wait_until(lambda: len(fired) >= 1, within=2, what="first run at start")
        await wait_until(lambda: len(fired) >= 3, within=5, what="repeated runs")
    finally:
        sched.shutdown()
    assert set(fired) == {"fast"}
    assert sched.fired["fast"] == len(fired)
    assert not sched.running


async def test_missed_runs_coalesce_into_one(no_leftovers, wait_until) -> None:
    fired: list[float] = []
    group = PollGroup("g", ("m1",), ("voltage",), interval=0.1)
    sched = PollScheduler([group], lambda g: fired.append(time.monotonic()))
    sched.start()
    try:
        await wait_until(lambda: len(fired) >= 1, within=2)
        before = len(fired)
        block_loop(0.55)  # about five runs are missed while the loop is held
        await asyncio.sleep(0.02)
        await asyncio.sleep(0.02)
        after_block = len(fired)
    finally:
        sched.shutdown()
    # the missed runs are coalesced: one catch-up run, not five
    assert after_block - before <= 2


async def test_cron_group_does_not_fire_at_start(no_leftovers) -> None:
    fired: list[str] = []
    group = PollGroup("daily", ("m1",), ("energy_active_import_total",), cron="0 0 1 1 *")
    sched = PollScheduler([group], lambda g: fired.append(g.name))
    sched.start()
    await asyncio.sleep(0.2)
    sched.shutdown()
    assert fired == []


def test_group_without_schedule_is_rejected() -> None:
    group = PollGroup("none", ("m1",), ("voltage",))
    sched = PollScheduler([group], lambda g: None)
    with pytest.raises(ValueError, match="neither interval nor cron"):
        sched.start()
    sched.shutdown()


def test_bad_cron_is_rejected() -> None:
    group = PollGroup("bad", ("m1",), ("voltage",), cron="not a cron")
    sched = PollScheduler([group], lambda g: None)
    with pytest.raises(ValueError):
        sched.start()


async def test_stop_lets_a_submitted_trigger_finish(caplog, no_leftovers) -> None:
    caplog.set_level(logging.WARNING)
    fired: list[str] = []
    group = PollGroup("g", ("m1",), ("voltage",), interval=10)
    for turns in range(3):
        sched = PollScheduler([group], lambda g: fired.append(g.name))
        sched.start()  # the run at start is submitted to the loop on its next turns
        for _ in range(turns):
            await asyncio.sleep(0)
        await sched.stop()
        assert not sched.running
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
