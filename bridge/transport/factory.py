"""``create_transport``: the right transport for a channel's kind."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.config.model import ChannelConfig, ChannelKind
from bridge.transport.base import Transport
from bridge.transport.dial_in import DialInListener
from bridge.transport.serial import SerialTransport
from bridge.transport.tcp_client import TcpClientTransport


def create_transport(
    channel: ChannelConfig, listeners: Mapping[str, DialInListener] | None = None
) -> Transport:
    """A closed transport for ``channel``; dial-in channels are registered with their listener.

    ``listeners``: listener name → ``DialInListener`` (needed for dial-in channels only).
    Raises ``ValueError`` for a channel whose settings do not match its kind or name an unknown
    listener (the loader's checks normally rule both out).
    """
    if channel.kind is ChannelKind.SERIAL:
        return SerialTransport(channel)
    if channel.kind is ChannelKind.TCP_CLIENT:
        return TcpClientTransport(channel)
    if channel.dial_in is None:
        raise ValueError(f"channel {channel.name!r} has no dial-in settings")
    listener = (listeners or {}).get(channel.dial_in.listener)
    if listener is None:
        raise ValueError(
            f"channel {channel.name!r} names listener {channel.dial_in.listener!r}, "
            "which is not running"
        )
    return listener.transport_for(channel)
