"""MeterHealth and ReconnectBackoff: the demotion and backoff rules, without I/O."""

from __future__ import annotations

import pytest

from bridge.polling.health import MeterHealth, MeterState, ReconnectBackoff, best_state


def polls_in(health: MeterHealth, triggers: int) -> int:
    return sum(health.due() for _ in range(triggers))


def test_new_meter_is_polled_every_trigger() -> None:
    h = MeterHealth()
    assert h.state is MeterState.WAITING
    assert polls_in(h, 10) == 10


def test_failing_then_demoted_after_threshold() -> None:
    h = MeterHealth(demote_after=3)
    h.success()
    assert h.failure() is MeterState.OK
    assert h.state is MeterState.FAILING
    h.failure()
    assert h.state is MeterState.FAILING
    assert polls_in(h, 4) == 4  # failing, not yet demoted: still every trigger
    h.failure()
    assert h.state is MeterState.DEMOTED
    assert h.consecutive_failures == 3
    assert h.poll_every == 2


def test_demoted_share_doubles_up_to_cap() -> None:
    h = MeterHealth(demote_after=1, max_skip=8)
    h.failure()
    shares = []
    for _ in range(6):
        assert h.state is MeterState.DEMOTED
        shares.append(h.poll_every)
        # one backed-off period: exactly one poll in poll_every triggers
        assert polls_in(h, h.poll_every) == 1
        h.failure()
    assert shares == [2, 4, 8, 8, 8, 8]


def test_first_success_promotes() -> None:
    h = MeterHealth(demote_after=2)
    for _ in range(5):
        h.failure()
    assert h.state is MeterState.DEMOTED
    assert h.success() is MeterState.DEMOTED
    assert h.state is MeterState.OK
    assert h.consecutive_failures == 0
    assert polls_in(h, 5) == 5


def test_auth_failed_is_sticky_until_reset() -> None:
    h = MeterHealth()
    h.auth_failed()
    assert not h.due()
    h.success()
    h.failure()
    h.disconnected()
    assert h.state is MeterState.AUTH_FAILED
    h.reset()
    assert h.state is MeterState.WAITING
    assert h.due()


def test_disconnected_is_polled_when_channel_returns() -> None:
    h = MeterHealth(demote_after=1)
    h.failure()
    h.disconnected()
    assert h.state is MeterState.NOT_CONNECTED
    assert not h.healthy
    assert polls_in(h, 3) == 3


def test_best_state() -> None:
    assert best_state([MeterState.DEMOTED, MeterState.OK]) is MeterState.OK
    assert best_state([MeterState.NOT_CONNECTED, MeterState.FAILING]) is MeterState.FAILING
    assert best_state([MeterState.OK, MeterState.AUTH_FAILED]) is MeterState.AUTH_FAILED


def test_reconnect_backoff_doubles_and_resets() -> None:
    b = ReconnectBackoff(0.5, 3.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next_delay() == 0.5


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (2, 1)])
def test_reconnect_backoff_rejects_bad_range(lo: float, hi: float) -> None:
    with pytest.raises(ValueError):
        ReconnectBackoff(lo, hi)
