"""RS-485 serial channel through pyserial: a device path or a pyserial URL (§1).

Why two I/O paths:

- a real port or a pseudo-terminal has a file descriptor; pyserial opens it non-blocking, so the
  event loop watches it with ``loop.add_reader`` and bytes arrive with no thread and no polling;
  an unplugged adapter (a closed pty) shows as EIO/EOF on that descriptor and becomes
  ``TransportClosed`` at once;
- a URL handler (``socket://``, ``rfc2217://``, ``loop://``) has no descriptor to watch, so its
  open, reads and writes run in one worker thread owned by the transport (started by ``open()``,
  joined by ``close()``), each read bounded to a short slice so that ``close()`` never waits long.

This is the only module that imports pyserial (DESIGN.md rule 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import serial

from bridge.config.model import ChannelConfig, SerialSettings
from bridge.transport.errors import ReadTimeout, TransportClosed, TransportUnavailable

log = logging.getLogger(__name__)

#: longest single blocking read of a URL handler in the executor (bounds close() latency)
URL_READ_SLICE = 0.1
_READ_CHUNK = 4096
_T = TypeVar("_T")


class SerialTransport:
    """One RS-485 port (``channel.serial``): baud rate, byte size, parity and stop bits."""

    def __init__(self, channel: ChannelConfig) -> None:
        if channel.serial is None:
            raise ValueError(f"channel {channel.name!r} has no serial settings")
        self.name = channel.name
        self.peer = ""
        self.identity = ""
        self.settings: SerialSettings = channel.serial
        self._port: serial.Serial | None = None
        self._fd: int | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._lost_reason = ""
        self._url_read: asyncio.Future[bytes] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SerialTransport({self.name!r}, {self.settings.port!r}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        """True while the port is open and has not failed."""
        return self._port is not None and not self._lost_reason

    async def open(self) -> None:
        """Open the port; ``TransportUnavailable`` if it is missing, busy or misconfigured."""
        if self.is_open:
            return
        await self.close()
        s = self.settings

        def open_port() -> serial.Serial:
            return serial.serial_for_url(
                s.port,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity.value,
                stopbits=s.stopbits,
                timeout=0,
                write_timeout=0,
            )

        try:
            if "://" in s.port:  # a URL handler may block (network): open it in our thread
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"serial {self.name}")
                port = await self._in_thread(open_port)
            else:  # a device node opens non-blocking at once
                port = open_port()
        except (serial.SerialException, OSError, ValueError) as exc:
            await self.close()
            raise TransportUnavailable(f"channel {self.name}: cannot open {s.port}: {exc}") from exc
        fd = getattr(port, "fd", None)
        self._port = port
        self._lost_reason = ""
        self._buffer.clear()
        self.peer = s.port
        if isinstance(fd, int):
            self._fd = fd
            asyncio.get_running_loop().add_reader(fd, self._on_readable)
        else:
            port.timeout = URL_READ_SLICE
            port.write_timeout = None

    async def close(self) -> None:
        """Close the port; ``open()`` may reopen it (an adapter plugged back in)."""
        port, self._port = self._port, None
        self.peer = ""
        self._stop_reader()
        self._lost("closed")
        if self._url_read is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._url_read), URL_READ_SLICE * 5)
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
        self._buffer.clear()
        executor, self._executor = self._executor, None
        if executor is not None:
            # Idle by now (the last read slice was awaited above): joining takes no time.
            executor.shutdown(wait=True)

    async def write(self, data: bytes) -> None:
        """Send bytes; ``TransportClosed`` if the port is closed or fails."""
        port = self._open_port()
        if self._fd is not None:
            await self._write_fd(self._fd, data)
            return
        try:
            await self._in_thread(port.write, data)
        except (serial.SerialException, OSError, TypeError) as exc:
            self._lost(str(exc))
            raise TransportClosed(f"channel {self.name}: write failed: {exc}") from exc

    async def read(self, timeout: float) -> bytes:  # noqa: ASYNC109 (contract)
        """At least one byte within ``timeout``."""
        if not self._buffer:
            self._open_port()
            if self._fd is not None:
                await self._wait_fd_data(timeout)
            else:
                await self._read_url(timeout)
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def discard_input(self) -> None:
        """Drop buffered input, ours and the driver's."""
        self._buffer.clear()
        if self._port is not None and not self._lost_reason:
            with contextlib.suppress(Exception):
                self._port.reset_input_buffer()

    # -- descriptor path -----------------------------------------------------------------------
    def _on_readable(self, /) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # A closed pty / unplugged USB adapter: EIO on the descriptor (DESIGN.md, tests).
            self._device_lost(f"read failed: {exc}")
            return
        if not data:
            self._device_lost("end of file (device gone)")
            return
        self._buffer += data
        self._wake()

    async def _wait_fd_data(self, limit: float) -> None:
        if self._waiter is not None:
            raise RuntimeError("SerialTransport.read() is already waiting (one reader only)")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            async with asyncio.timeout(limit):
                await waiter
        except TimeoutError:
            if not self._buffer:
                raise ReadTimeout(f"channel {self.name}: no byte within {limit:g} s") from None
        finally:
            self._waiter = None
        if not self._buffer:
            raise TransportClosed(f"channel {self.name}: {self._lost_reason or 'closed'}")

    async def _write_fd(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, _resolve, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
                self._open_port()
                continue
            except OSError as exc:
                self._device_lost(f"write failed: {exc}")
                raise TransportClosed(f"channel {self.name}: write failed: {exc}") from exc
            view = view[written:]

    def _device_lost(self, reason: str) -> None:
        if not self._lost_reason:
            log.warning(
                "channel %s: serial port %s lost: %s", self.name, self.settings.port, reason
            )
        self._stop_reader()
        self._lost(reason)

    def _stop_reader(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None

    # -- URL handler path ----------------------------------------------------------------------
    async def _read_url(self, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not self._buffer:
            port = self._open_port()
            self._url_read = asyncio.ensure_future(self._in_thread(_read_available, port))
            try:
                data = await asyncio.shield(self._url_read)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                self._lost(str(exc))
                raise TransportClosed(f"channel {self.name}: read failed: {exc}") from exc
            finally:
                self._url_read = None
            self._buffer += data
            if not self._buffer and loop.time() >= deadline:
                raise ReadTimeout(f"channel {self.name}: no byte within {limit:g} s")

    async def _in_thread(self, func: Callable[..., _T], *args: object) -> _T:
        if self._executor is None:
            raise TransportClosed(f"channel {self.name}: not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # -- common --------------------------------------------------------------------------------
    def _open_port(self) -> serial.Serial:
        if self._port is None or self._lost_reason:
            raise TransportClosed(f"channel {self.name}: {self._lost_reason or 'not open'}")
        return self._port

    def _lost(self, reason: str) -> None:
        self._lost_reason = self._lost_reason or reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _read_available(port: serial.Serial) -> bytes:
    """Blocking read of whatever arrives within the port's timeout (executor thread)."""
    first = port.read(1)
    if not first:
        return b""
    waiting = port.in_waiting
    return first + (port.read(waiting) if waiting else b"")
