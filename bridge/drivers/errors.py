"""Driver errors (docs/architecture.md, "Link and driver").

Which failure means what for polling:

- ``ResponseTimeout``, ``CorruptReply``: the meter did not answer usably (transient; retried);
- ``MeterErrorReply``: the meter answered with an error code (on one register: per register);
  ``SessionRefused`` when it was the session open that failed (the whole poll fails);
- ``BadValue``: a value the meter sent cannot be decoded (per register, quality bad);
- ``AuthenticationFailed``: the password was rejected; sticky until ``reset_auth()``;
- ``LinkDown``: the channel is closed or was lost; it is also a ``TransportClosed``.
"""

from __future__ import annotations

from bridge.transport.errors import TransportClosed


class DriverError(Exception):
    """Base of every driver error."""


class ResponseTimeout(DriverError):
    """No reply for the request within the response timeout."""


class CorruptReply(ResponseTimeout):
    """Only corrupt (bad CRC) frames arrived before the timeout. A kind of timeout: transient."""


class MeterErrorReply(DriverError):
    """The meter answered with an error reply (FUNC | 0x80, protocol notes §4)."""

    def __init__(self, code: int, meaning: str = "", register: str | None = None) -> None:
        self.code = code
        self.meaning = meaning
        self.register = register
        where = f" on register {register}" if register else ""
        text = f" ({meaning})" if meaning else ""
        super().__init__(f"meter error {code:02X}{text}{where}")


class SessionRefused(MeterErrorReply):
    """The meter refused a session for another reason than the password.

    E.g. error 03 for an access level it does not offer. Fails the whole poll, never one register.
    """


class AuthenticationFailed(DriverError):
    """The meter rejected the password (error 0D or 09 on session open, protocol notes §3).

    Sticky: the driver opens no more sessions to this meter until ``reset_auth()``.
    """


class BadValue(DriverError):
    """The meter sent a value that cannot be decoded (e.g. a BCD nibble above 9)."""

    def __init__(self, register: str, raw: bytes, reason: str) -> None:
        self.register = register
        self.raw = raw
        self.reason = reason
        super().__init__(f"bad value for register {register}: {raw.hex(' ')}: {reason}")


class LinkDown(DriverError, TransportClosed):
    """The transport under the link is closed or was lost; polling reconnects it."""
