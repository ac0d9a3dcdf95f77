"""Transport errors: the channel cannot be opened, went away, or stayed silent."""

from __future__ import annotations


class TransportError(Exception):
    """Base of every transport error."""


class TransportUnavailable(TransportError):
    """The channel cannot be opened or connected now (no adapter, refused, no module attached).

    The polling side marks the channel's meters not connected and calls ``open()`` again later
    with backoff.
    """


class TransportClosed(TransportError):
    """The channel was closed or lost (peer closed, adapter unplugged) or was never opened."""


class ReadTimeout(TransportError):
    """No byte arrived within the read timeout."""
