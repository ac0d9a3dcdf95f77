"""ChannelWorker: one task per channel owns the bus (DESIGN.md rule 2).

The worker keeps its transport open (reconnecting with doubling backoff), and runs queued poll jobs
one at a time through the channel's ``Link`` (which enforces one transaction at a time and the
inter-frame gap). An idle worker awaits its queue — or, for a dial-in channel, the transport's
``open()`` that waits for the module to attach — so a thousand channels cost a thousand sleeping
tasks and nothing more. Jobs are keyed: a job still queued or running is not queued twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable

from bridge.config.model import ChannelConfig, ChannelKind
from bridge.drivers.errors import LinkDown
from bridge.drivers.link import Link
from bridge.polling.diagnostics import DiagnosticsWriter
from bridge.polling.health import ReconnectBackoff
from bridge.tags import TagStore
from bridge.tags.model import Scalar
from bridge.transport import Transport, TransportClosed, TransportUnavailable

log = logging.getLogger(__name__)

#: a poll job: runs on the worker's task with exclusive use of the link
JobAction = Callable[[Link], Awaitable[None]]
#: called on every change of the channel's connection state
ConnectionCallback = Callable[["ChannelWorker", bool], None]

#: errors that mean the channel itself is gone (not one meter failing on it)
CHANNEL_DOWN_ERRORS: tuple[type[Exception], ...] = (TransportClosed, TransportUnavailable, LinkDown)


class ChannelWorker:
    """Owns one channel: its transport, its link, a queue of poll jobs and the reconnect loop."""

    def __init__(
        self,
        channel: ChannelConfig,
        transport: Transport,
        link: Link,
        store: TagStore,
        on_connection: ConnectionCallback | None = None,
    ) -> None:
        self.channel = channel
        self.transport = transport
        self.link = link
        self._on_connection = on_connection
        # (priority, sequence, key, action): live polls (0) always before background jobs (1)
        self._queue: asyncio.PriorityQueue[tuple[int, int, Hashable, JobAction]] = (
            asyncio.PriorityQueue()
        )
        self._sequence = itertools.count()
        self._pending: set[Hashable] = set()
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._reported: bool | None = None  # last state given to on_connection
        self._ever_connected = False
        self._reconnects = 0
        self._down_logged = False
        self._diag = DiagnosticsWriter.for_channel(store, channel.name)

    # -- state ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Channel name."""
        return self.channel.name

    @property
    def connected(self) -> bool:
        """True while the transport is open and usable."""
        return self._connected

    @property
    def down(self) -> bool:
        """True once the channel was found down (not while it is still opening the first time)."""
        return self._reported is False

    @property
    def reconnects(self) -> int:
        """Successful re-connections after the first connection."""
        return self._reconnects

    def diag_keys(self) -> list[str]:
        """The channel's diagnostic keys."""
        return self._diag.keys()

    def diagnostics(self) -> dict[str, Scalar]:
        """Current channel diagnostics (the values of ``channel:<name>.<field>``)."""
        return self._diag.as_dict()

    def queued(self) -> int:
        """Jobs queued or running."""
        return len(self._pending)

    # -- jobs -------------------------------------------------------------------------------
    def enqueue(self, key: Hashable, action: JobAction, *, background: bool = False) -> bool:
        """Queue a job unless one with the same key is still queued or running (coalesce).

        A ``background`` job (archive reads, backfill) runs only when no live poll is queued:
        live polls keep their cadence, background work fills the gaps.
        """
        if key in self._pending:
            return False
        self._pending.add(key)
        self._queue.put_nowait((1 if background else 0, next(self._sequence), key, action))
        return True

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Publish the channel diagnostics and start the worker task."""
        self._diag.define()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"channel:{self.name}")
            self._task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # a bug, not a meter or channel problem: say so once, with the traceback
            log.error("channel %s: worker stopped", self.name, exc_info=task.exception())

    async def stop(self, farewell: JobAction | None = None, farewell_timeout: float = 1.0) -> None:
        """Cancel the worker, run ``farewell`` (close sessions) if the channel is open, close it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if farewell is not None and self.transport.is_open:
            self.transport.discard_input()
            try:
                await asyncio.wait_for(farewell(self.link), farewell_timeout)
            except Exception as exc:  # best effort on the way out
                log.debug("channel %s: closing sessions failed: %r", self.name, exc)
        await self.transport.close()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._pending.clear()

    async def _run(self) -> None:
        backoff = ReconnectBackoff(self.channel.reconnect_min, self.channel.reconnect_max)
        while True:
            if not self.transport.is_open:
                if self.channel.kind is ChannelKind.DIAL_IN:
                    # open() waits for the module to dial in and be identified, which may take
                    # long: the channel is not connected meanwhile
                    self._set_connected(False)
                if not await self._open(backoff):
                    await asyncio.sleep(backoff.next_delay())
                    continue
            elif not self._connected:
                # a dial-in module attached a new connection while the worker was closing the
                # old one or backing off: say connected, or a later loss would go unreported
                self._set_connected(True)
            _, _, key, action = await self._queue.get()
            try:
                await action(self.link)
            except CHANNEL_DOWN_ERRORS as exc:
                log.warning("channel %s: connection lost: %s", self.name, exc or type(exc).__name__)
                self._down_logged = True
                await self.transport.close()
                self._set_connected(False)
                await asyncio.sleep(backoff.next_delay())
            except Exception:
                log.exception("channel %s: poll job %r failed", self.name, key)
            finally:
                self._pending.discard(key)
                self._publish()

    async def _open(self, backoff: ReconnectBackoff) -> bool:
        try:
            await self.transport.open()
        except Exception as exc:
            # TransportUnavailable is the expected case; anything else (a bad device path,
            # permissions) is logged with its type and retried the same way
            if not self._down_logged:
                reason = str(exc) if isinstance(exc, TransportUnavailable) else repr(exc)
                log.warning("channel %s: cannot open: %s", self.name, reason or "unavailable")
                self._down_logged = True
            self._set_connected(False)
            return False
        if self._ever_connected:
            self._reconnects += 1
        if self._down_logged:
            log.info("channel %s: connected (%s)", self.name, self.transport.peer)
            self._down_logged = False
        self._ever_connected = True
        backoff.reset()
        self._set_connected(True)
        return True

    def _set_connected(self, connected: bool) -> None:
        changed = connected != self._reported
        self._connected = connected
        self._reported = connected
        self._publish()
        if changed and self._on_connection is not None:
            self._on_connection(self, connected)

    def _publish(self) -> None:
        stats = self.link.stats
        self._diag.update(
            {
                "connected": self._connected,
                "identity": self.transport.identity,
                "peer": self.transport.peer,
                "requests": int(stats.requests),
                "timeouts": int(stats.timeouts),
                "crc_errors": int(stats.crc_errors),
                "garbage_bytes": int(stats.garbage_bytes),
                "reconnects": self._reconnects,
            }
        )
