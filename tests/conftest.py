"""Shared test fixtures: free ports, bounded waits, and a check that nothing is left running."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

WaitUntil = Callable[..., Awaitable[None]]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a currently free TCP port on 127.0.0.1 (prefer binding port 0)."""
    return _free_port


async def _wait_until(
    predicate: Callable[[], object], within: float = 5.0, interval: float = 0.02, what: str = ""
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s: {what or predicate}")
        await asyncio.sleep(interval)


@pytest.fixture
def wait_until() -> WaitUntil:
    """``await wait_until(predicate, within=5.0, what="...")``: a bounded wait for a condition."""
    return _wait_until


@pytest.fixture
async def no_leftovers() -> AsyncIterator[None]:
    """Fails the test if it leaves an asyncio task or a new thread running."""
    threads_before = set(threading.enumerate())
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not tasks, f"tasks left behind: {tasks}"
    # the loop's default executor (run_in_executor(None, ...)) is the loop's, not the test's:
    # shut it down so that its idle worker threads do not count as left behind
    await asyncio.get_running_loop().shutdown_default_executor()
    threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not threads, f"threads left behind: {threads}"
