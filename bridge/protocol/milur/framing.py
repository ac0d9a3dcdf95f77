"""The resynchronising byte buffer shared by the codec's decoders (internal to the codec).

Reply and request lengths come from protocol notes §2/§4. ``Framer._take_frame`` is the hunting loop:
each step returns a frame, drops at least one byte, or waits for more data, so it always ends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.protocol.milur.codes import ERROR_FLAG, Func
from bridge.protocol.milur.crc import crc16_update, crc_ok

#: reply DATA lengths of the functions whose reply has a fixed size (§4; where §4 gives only the
#: request, ours: 09 echoes ``01`` like 08, 0F is 4 unknown bytes + the address byte, C3 is
#: 4 unknown bytes + the 15-byte IMEI so that the frame is the 26 bytes of §7).
FIXED_REPLY_DATA = {
    Func.JOURNAL_COUNT: 2,
    Func.OPEN_SESSION: 1,
    Func.CLOSE_SESSION: 1,
    Func.JOURNAL_RECORD: 7,
    Func.NETWORK_ADDRESS: 5,
    Func.ARCHIVE_SEARCH: 5,
    Func.IDENTIFY: 19,
}
#: request DATA lengths (meter side); WRITE has a variable length and is framed by CRC
REQUEST_DATA = {
    Func.READ: 1,
    Func.JOURNAL_COUNT: 1,
    Func.OPEN_SESSION: 7,
    Func.CLOSE_SESSION: 1,
    Func.JOURNAL_RECORD: 3,
    Func.DAILY_RECORD: 3,
    Func.PROFILE_RECORD: 3,
    Func.NETWORK_ADDRESS: 0,
    Func.ARCHIVE_SEARCH: 11,
    Func.IDENTIFY: 2,
}
ERROR_DATA = 2  # CODE 00
FUNC_BYTES = frozenset(int(f) for f in Func)
#: largest DATA we hunt for by CRC (daily/profile records without a size hint, writes)
MAX_HUNTED_DATA = 250
#: the buffer never holds more than this many bytes (oldest dropped and counted)
MAX_BUFFER = 2048


class Kind(enum.Enum):
    """What may start at a buffer position."""

    FRAME = "frame"  # a complete valid frame we want
    FOREIGN = "foreign"  # a complete valid frame we do not want (other address, stale, echo)
    BAD_CRC = "bad-crc"  # a complete plausible frame whose CRC is wrong
    GARBAGE = "garbage"  # cannot start a frame here
    NEED_MORE = "need-more"  # may start a frame, incomplete


NEED = (Kind.NEED_MORE, 0)
GARBAGE = (Kind.GARBAGE, 0)


@dataclass(slots=True)
class DecoderStats:
    """What a decoder discarded, and how many frames it delivered."""

    frames: int = 0
    discarded_bytes: int = 0
    crc_errors: int = 0
    foreign_frames: int = 0  # valid frames not for the request in flight (incl. our own echo)
    invalid_frames: int = 0  # valid CRC but content we cannot parse


def complete(buf: bytearray, s: int, total: int) -> tuple[Kind, int]:
    """FRAME, BAD_CRC, or NEED_MORE for a frame of known length ``total`` at ``s``."""
    if len(buf) - s < total:
        return NEED
    return (Kind.FRAME, total) if crc_ok(bytes(buf[s : s + total])) else (Kind.BAD_CRC, 0)


class Framer:
    """Buffer, statistics and the resynchronising loop shared by both decoders.

    Work is bounded on hostile input: a CRC hunt keeps a running CRC per stream position, and
    positions that can never start a frame are remembered, so each new byte costs O(buffer).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0]
        self._hunts: dict[tuple[int, int, int, int], tuple[int, int, int]] = {}  # _hunt state
        self._dead: set[int] = set()  # stream offsets that cannot start a frame
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data
        excess = len(self._buf) - MAX_BUFFER
        if excess > 0:
            self._drop(excess)
            self.stats.discarded_bytes += excess

    @property
    def buffered(self) -> int:
        """Bytes waiting in the buffer."""
        return len(self._buf)

    def clear(self) -> int:
        """Drop buffered bytes (e.g. after a timeout); returns and counts how many."""
        n = len(self._buf)
        self._drop(n)
        self.stats.discarded_bytes += n
        return n

    def _forget(self) -> None:
        """Forget cached classifications (what is wanted changed)."""
        self._hunts.clear()
        self._dead.clear()

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self._base += n
        if len(self._hunts) + len(self._dead) > 4 * (len(self._buf) + MAX_HUNTED_DATA):
            self._hunts = {k: v for k, v in self._hunts.items() if k[0] >= self._base}
            self._dead = {k for k in self._dead if k >= self._base}

    def _classify(self, s: int) -> tuple[Kind, int]:
        raise NotImplementedError

    def _hunt(self, s: int, header: int, sizes: range) -> tuple[Kind, int]:
        """Shortest frame ``header + size + 2`` (``size`` in ``sizes``) whose CRC is valid.

        For DATA whose length §4 does not give. Over a whole frame including its CRC (low byte
        first) CRC-16/MODBUS gives 0, so one running CRC per position checks every length; it is
        kept between calls, so each new byte is hashed once per position.
        """
        buf = self._buf
        key = (self._base + s, header, sizes.start, sizes.step)
        total, crc, found = self._hunts.get(key, (0, 0xFFFF, 0))
        if found:
            return Kind.FRAME, found
        first, last = header + sizes[0] + 2, header + sizes[-1] + 2
        end = min(len(buf) - s, last)
        if total < first:
            if end < first:
                return NEED
            total, crc = first, crc16_update(0xFFFF, bytes(buf[s : s + first]))
        while True:
            if crc == 0 and (total - first) % sizes.step == 0:
                self._hunts[key] = (total, crc, total)
                return Kind.FRAME, total
            if total >= end:
                break
            crc = crc16_update(crc, bytes(buf[s + total : s + total + 1]))
            total += 1
        self._hunts[key] = (total, crc, 0)
        return (Kind.BAD_CRC, 0) if total >= last else NEED

    def _take_frame(self) -> bytes | None:
        """The next wanted frame's bytes, or None; discards everything unwanted before it."""
        buf = self._buf
        while buf:
            kind, length = self._classify(0)
            if kind is Kind.FRAME:
                frame = bytes(buf[:length])
                self._drop(length)
                return frame
            if kind is Kind.FOREIGN:
                self._drop(length)
                self.stats.foreign_frames += 1
            elif kind is Kind.BAD_CRC or kind is Kind.GARBAGE:
                # resynchronise: drop one byte and hunt again from the next one
                self.stats.crc_errors += kind is Kind.BAD_CRC
                self._drop(1)
                self.stats.discarded_bytes += 1
            else:
                # incomplete: wait, unless a complete frame already starts further on
                skip = self._complete_frame_after()
                if skip is None:
                    return None
                self._count_skipped(bytes(buf[:skip]))
                self._drop(skip)
        return None

    def _count_skipped(self, skipped: bytes) -> None:
        self.stats.discarded_bytes += len(skipped)

    def _complete_frame_after(self) -> int | None:
        dead, base = self._dead, self._base
        for k in range(1, len(self._buf)):
            if base + k in dead:
                continue
            kind = self._classify(k)[0]
            if kind is Kind.FRAME or kind is Kind.FOREIGN:
                return k
            if kind is Kind.GARBAGE or kind is Kind.BAD_CRC:  # final: more bytes cannot help
                dead.add(base + k)
        return None


def generic_reply(buf: bytearray, s: int, width: int) -> tuple[Kind, int]:
    """A reply of any address and function: a valid one is FOREIGN (not for the request)."""
    avail = len(buf) - s
    if avail <= width:
        return NEED
    f = buf[s + width]
    if f & ERROR_FLAG and f != Func.IDENTIFY and (f & ~ERROR_FLAG) in FUNC_BYTES:
        size = ERROR_DATA
    elif f == Func.READ:
        if avail <= width + 2:
            return NEED
        size = 2 + buf[s + width + 2]
    elif f in FUNC_BYTES and Func(f) in FIXED_REPLY_DATA:
        size = FIXED_REPLY_DATA[Func(f)]
    else:
        return GARBAGE
    kind, total = complete(buf, s, width + 1 + size + 2)
    if kind is Kind.FRAME:
        return Kind.FOREIGN, total
    return NEED if kind is Kind.NEED_MORE else GARBAGE
