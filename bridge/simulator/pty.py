"""A simulated RS-485 line on a pseudo-terminal, as slow as the real wire.

The bridge (or ``milur-bridge read``) opens :attr:`PtyLine.device` with pyserial. The line honours
wire time: every byte takes ``bits_per_byte / baudrate`` seconds in both directions, a request is
complete after 3.5 character times of silence (protocol notes §1), and the meter answers after a
turnaround delay. Serial packets are delimited by silence, so a lone ``FF`` is seen as the 104 wake
byte and any 8-byte packet counts for the 104 quirk.

:meth:`PtyLine.close` simulates an unplugged adapter (the client's reads and writes fail);
:meth:`PtyLine.reopen` plugs it back. A new pseudo-terminal gets a **new path**; pass ``link`` to
get a stable symlink that always points at the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

from bridge.simulator.bus import BusConnection, SimulatedBus

_MIN_GAP = 0.002  # seconds; below this the OS scheduling, not the line, decides
_WRITE_SLICE = 0.004  # seconds of wire time written at once


class PtyLine:
    """A pseudo-terminal serving ``bus`` at ``baudrate``; use as ``async with PtyLine(bus) as line``."""

    def __init__(
        self,
        bus: SimulatedBus,
        baudrate: int = 9600,
        *,
        turnaround: float = 0.02,
        bits_per_byte: int = 10,
        link: str | None = None,
    ) -> None:
        if baudrate <= 0:
            raise ValueError("baudrate must be positive")
        self.bus = bus
        self.baudrate = baudrate
        self.turnaround = turnaround
        self.char_time = bits_per_byte / baudrate
        self.gap = max(3.5 * self.char_time, _MIN_GAP)
        self.link = link
        self.bytes_received = 0
        self.bytes_sent = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._path = ""
        self._connection: BusConnection | None = None
        self._rx = bytearray()
        self._rx_end = 0.0  # when the last received byte finished on the wire
        self._timer: asyncio.TimerHandle | None = None
        self._packets: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    @property
    def device(self) -> str:
        """The path a serial client opens (the symlink when ``link`` was given)."""
        if self._master is None:
            raise RuntimeError("PtyLine is not open")
        return self.link or self._path

    @property
    def is_open(self) -> bool:
        """True while the adapter is plugged in."""
        return self._master is not None

    async def start(self) -> None:
        """Create the pseudo-terminal and start answering."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._path = os.ttyname(slave)
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
            os.symlink(self._path, self.link)
        self._connection = self.bus.connection()
        self._rx.clear()
        self._packets = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._on_readable)
        self._worker = asyncio.create_task(self._answer_packets(), name=f"pty {self._path}")

    async def __aenter__(self) -> PtyLine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Unplug: close the pseudo-terminal; a client's reads and writes then fail."""
        if self._master is None:
            return
        asyncio.get_running_loop().remove_reader(self._master)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    async def reopen(self) -> None:
        """Plug the adapter back in: a new pseudo-terminal (new path; the ``link`` follows it)."""
        await self.close()
        await self.start()

    # ------------------------------------------------------------------ receive
    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # no client has the slave open any more
        if not data:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._rx and now > self._rx_end + self.gap:
            self._end_of_packet()  # the silence really happened even if the timer is late
        # The client wrote instantly; the bytes still need their wire time to arrive.
        self._rx_end = max(now, self._rx_end) + len(data) * self.char_time
        self._rx += data
        self.bytes_received += len(data)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self._rx_end + self.gap, self._end_of_packet)

    def _end_of_packet(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._rx:
            self._packets.put_nowait((bytes(self._rx), self._rx_end))
            self._rx.clear()

    # ------------------------------------------------------------------ answer
    async def _answer_packets(self) -> None:
        assert self._connection is not None
        loop = asyncio.get_running_loop()
        while True:
            packet, ended = await self._packets.get()
            for answer in self._connection.feed(packet, packet=True):
                start = ended + self.turnaround + answer.delay
                await asyncio.sleep(max(0.0, start - loop.time()))
                await self._transmit(answer.payload)
                ended = loop.time()

    async def _transmit(self, payload: bytes) -> None:
        """Write at line speed: ``char_time`` per byte, in small slices."""
        loop = asyncio.get_running_loop()
        per_slice = max(1, int(_WRITE_SLICE / self.char_time))
        start = loop.time()
        for offset in range(0, len(payload), per_slice):
            chunk = payload[offset : offset + per_slice]
            due = start + offset * self.char_time
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self._master is None:
                return
            with contextlib.suppress(BlockingIOError):
                os.write(self._master, chunk)
            self.bytes_sent += len(chunk)
        # the last slice is still on the wire
        await asyncio.sleep(max(0.0, start + len(payload) * self.char_time - loop.time()))
