"""TagStore key naming, shared by polling (writer) and the publishers (readers).

- a mapped tag:            ``"<meter>.<tag>"``
- a meter diagnostic:      ``"<meter>.diag.<field>"`` with a field of ``METER_DIAG_FIELDS``
- a channel diagnostic:    ``"channel:<channel>.<field>"`` with a field of ``CHANNEL_DIAG_FIELDS``

Diagnostic values are always Good quality (they describe the bridge's own view); their
``source_time`` is when the bridge last changed them.
"""

from __future__ import annotations

#: field → Python type of the value (publishers choose OPC UA / Modbus types from it)
METER_DIAG_FIELDS: dict[str, type] = {
    "state": str,  # ok | failing | demoted | auth_failed | not_connected | waiting
    "last_success": str,  # ISO 8601 UTC time of the last successful transaction, "" if never
    "consecutive_failures": int,
    "requests": int,
    "responses": int,
    "timeouts": int,
    "crc_errors": int,
    "meter_errors": int,  # error replies (FUNC|0x80)
    "round_trip_ms": float,  # last successful request → reply time
    "firmware": str,  # register 33, read at first contact
    "serial_number": str,  # register 68, read at first contact
    "model_reported": str,  # register 32, read at first contact
    "channel_in_use": str,  # name of the channel that served the last value (primary or backup)
    "clock_drift_s": float,  # meter clock (register 14) minus the bridge's clock, seconds; 0 until read
}

CHANNEL_DIAG_FIELDS: dict[str, type] = {
    "connected": bool,
    "identity": str,  # IMEI / serial / IP of a dial-in module, "" otherwise
    "peer": str,  # "host:port" of the TCP peer, or the serial port
    "requests": int,
    "timeouts": int,
    "crc_errors": int,
    "garbage_bytes": int,
    "reconnects": int,
}

#: meter states, in the order of their Modbus code (docs/modbus.md)
METER_STATES: tuple[str, ...] = (
    "waiting",
    "ok",
    "failing",
    "demoted",
    "auth_failed",
    "not_connected",
)


def tag_key(meter: str, tag: str) -> str:
    """Key of a mapped tag."""
    return f"{meter}.{tag}"


def meter_diag_key(meter: str, field: str) -> str:
    """Key of a meter diagnostic."""
    return f"{meter}.diag.{field}"


def channel_diag_key(channel: str, field: str) -> str:
    """Key of a channel diagnostic."""
    return f"channel:{channel}.{field}"
