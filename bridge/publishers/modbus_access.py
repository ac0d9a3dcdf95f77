"""Who may connect to the Modbus server: the client allow-list, the connection limit, log-once."""

from __future__ import annotations

import ipaddress
import logging

from bridge.config.modbus_map import IPNetwork, parse_network

log = logging.getLogger(__name__)

#: refused addresses remembered for "log once"; beyond this, refusals are no longer logged
MAX_REMEMBERED_REFUSALS = 1024


class ClientGate:
    """Admits or refuses a new client connection; each refused address is logged once."""

    def __init__(self, allow: tuple[str, ...], max_connections: int) -> None:
        """``allow``: addresses or networks (empty admits everyone); bad entries raise ValueError."""
        self._networks: tuple[IPNetwork, ...] = tuple(parse_network(a) for a in allow)
        self._max_connections = max_connections
        self._logged: set[tuple[str, str]] = set()
        self.refused = 0  # connections refused so far (for metrics)
        self.dropped = 0  # connections closed for sending something that is not Modbus TCP

    def is_allowed(self, host: str) -> bool:
        """True when ``host`` is in the allow-list (or the list is empty)."""
        if not self._networks:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)

    def admit(self, host: str, connections: int) -> bool:
        """Decide on a new client from ``host``; ``connections`` counts open ones including it."""
        if not self.is_allowed(host):
            self._refuse(host, "not in the modbus allow-list")
            return False
        if connections > self._max_connections:
            self._refuse(host, f"max-connections ({self._max_connections}) reached")
            return False
        return True

    def drop(self, host: str, reason: str) -> None:
        """Count (and log once per address) a connection closed for what its client sent."""
        self.dropped += 1
        if self._first_time(host, reason):
            log.warning("modbus: closed connection from %s: %s (logged once per address)", host, reason)

    def _refuse(self, host: str, reason: str) -> None:
        self.refused += 1
        if self._first_time(host, reason):
            log.warning("modbus: refused client %s: %s (logged once per address)", host, reason)

    def _first_time(self, host: str, reason: str) -> bool:
        key = (host, reason)
        if key in self._logged or len(self._logged) >= MAX_REMEMBERED_REFUSALS:
            return False
        self._logged.add(key)
        return True
