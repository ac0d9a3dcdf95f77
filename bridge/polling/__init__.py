"""Polling: one ChannelWorker per channel, APScheduler triggers, per-meter health (DESIGN.md rule 3).

``from bridge.polling import Collector`` is resolved lazily so that the pure parts (``health``)
import without the transport and driver stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.polling.collector import Collector

__all__ = ["Collector"]


def __getattr__(name: str) -> object:
    if name == "Collector":
        from bridge.polling.collector import Collector

        return Collector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
