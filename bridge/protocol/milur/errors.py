"""Errors raised by the Milur codec.

``next_frame()`` and ``next_request()`` never raise for what a peer sent; they discard it and count it.
The errors below are for our own misuse (``CodecUsageError``) and for values the meter sent that we
cannot trust (``ValueDecodeError``, raised only when a caller asks to interpret a value).
"""

from __future__ import annotations


class MilurError(Exception):
    """Base class of every Milur codec error."""


class CodecUsageError(MilurError):
    """The codec was used wrongly (a bug in the caller, never caused by peer data)."""


class ValueDecodeError(MilurError):
    """A value sent by the meter cannot be decoded (bad BCD digit, wrong length, invalid date)."""


class FrameError(MilurError):
    """Bytes do not form a valid Milur frame (used by explicit one-shot decoding helpers)."""
