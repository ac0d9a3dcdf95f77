"""Per-meter health and backoff: pure state machines, no I/O (DESIGN.md rule 3).

``MeterHealth`` tracks one meter on one channel path (primary or backup):
``waiting`` → ``ok`` on success; ``ok`` → ``failing`` on a failure; ``failing`` → ``demoted`` after
``demote_after`` consecutive failures; ``demoted`` meters are polled at a backed-off share of the
poll triggers (every 2nd, 4th, 8th … trigger up to a cap), so a dead meter never stretches the cycle
of the healthy ones on its bus; the first success promotes the meter back to ``ok``.
``auth_failed`` is sticky until ``reset()`` (protocol notes §3: never retry a rejected password).

``ReconnectBackoff`` is the doubling delay between attempts to (re)open a channel.
"""

from __future__ import annotations

import enum


class MeterState(enum.Enum):
    """A meter's polling state; values are the strings published as ``<meter>.diag.state``."""

    WAITING = "waiting"
    OK = "ok"
    FAILING = "failing"
    DEMOTED = "demoted"
    AUTH_FAILED = "auth_failed"
    NOT_CONNECTED = "not_connected"


#: how good a state is when a meter has two paths (primary and backup): higher is better
_RANK = {
    MeterState.AUTH_FAILED: 0,
    MeterState.NOT_CONNECTED: 1,
    MeterState.DEMOTED: 2,
    MeterState.FAILING: 3,
    MeterState.WAITING: 4,
    MeterState.OK: 5,
}


def best_state(states: list[MeterState]) -> MeterState:
    """The best of several path states (auth_failed wins: it concerns the meter, not a path)."""
    if MeterState.AUTH_FAILED in states:
        return MeterState.AUTH_FAILED
    return max(states, key=_RANK.__getitem__)


class MeterHealth:
    """Health of one meter on one channel path, driven by poll outcomes and poll triggers."""

    def __init__(self, demote_after: int = 3, max_skip: int = 32) -> None:
        if demote_after < 1 or max_skip < 1:
            raise ValueError("demote_after and max_skip must be >= 1")
        self.demote_after = demote_after
        self.max_skip = max_skip
        self.state = MeterState.WAITING
        self.consecutive_failures = 0
        self._every = 1  # a demoted meter is polled on one trigger in ``_every``
        self._skipped = 0

    @property
    def poll_every(self) -> int:
        """A demoted meter is polled on one trigger out of this many (1 when not demoted)."""
        return self._every

    @property
    def healthy(self) -> bool:
        """True when the meter answers (or has not been tried yet) on this path."""
        return self.state in (MeterState.OK, MeterState.WAITING)

    def due(self) -> bool:
        """Whether this poll trigger should poll the meter on this path (call once per trigger).

        Counting triggers (not seconds) keeps the backed-off share exact and testable.
        """
        if self.state is MeterState.AUTH_FAILED:
            return False
        if self.state is not MeterState.DEMOTED:
            return True
        self._skipped += 1
        if self._skipped >= self._every:
            self._skipped = 0
            return True
        return False

    def success(self) -> MeterState:
        """A poll succeeded; returns the previous state."""
        previous = self.state
        if previous is MeterState.AUTH_FAILED:
            return previous
        self.state = MeterState.OK
        self.consecutive_failures = 0
        self._every = 1
        self._skipped = 0
        return previous

    def failure(self) -> MeterState:
        """A poll failed (timeout, corrupt replies); returns the previous state."""
        previous = self.state
        if previous is MeterState.AUTH_FAILED:
            return previous
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.demote_after:
            if previous is MeterState.DEMOTED:
                self._every = min(self._every * 2, self.max_skip)
            else:
                self._every = 2
                self._skipped = 0
            self.state = MeterState.DEMOTED
        else:
            self.state = MeterState.FAILING
        return previous

    def auth_failed(self) -> MeterState:
        """The meter rejected the password; returns the previous state."""
        previous = self.state
        self.state = MeterState.AUTH_FAILED
        return previous

    def disconnected(self) -> MeterState:
        """The channel went down; returns the previous state. Failure counts are kept."""
        previous = self.state
        if previous is not MeterState.AUTH_FAILED:
            self.state = MeterState.NOT_CONNECTED
            self._every = 1
            self._skipped = 0
        return previous

    def reset(self) -> None:
        """Forget everything (operator reset after an authentication failure)."""
        self.state = MeterState.WAITING
        self.consecutive_failures = 0
        self._every = 1
        self._skipped = 0


class ReconnectBackoff:
    """Doubling delay between channel (re)open attempts: ``minimum``, 2×, 4× … up to ``maximum``."""

    def __init__(self, minimum: float, maximum: float) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"bad reconnect range {minimum}..{maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._next = minimum

    def next_delay(self) -> float:
        """The delay before the next attempt; doubles the one after."""
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """Back to ``minimum`` after a successful open."""
        self._next = self.minimum
