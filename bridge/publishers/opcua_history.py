# asyncua types ints/datetimes as NewTypes (Int32, UInt32, DateTime) and omits re-exports; checking
# every literal against them adds nothing but casts.
# mypy: disable-error-code="attr-defined,arg-type"
"""OPC UA HistoryRead (raw) served from the ReadingStore, with the meter's timestamps (docs/opcua.md).

- ``ReadingHistory`` is asyncua's ``HistoryStorageInterface`` backed by ``ReadingStore.history()``
  (stored tags) and ``ReadingStore.archive()`` (archive tags, ``bridge/storage/archive_tags.py``),
  never by asyncua's in-memory history: the SourceTimestamp of every value is the meter's read time
  (readings) or the record's time (start of the day, start of the half-hour).
- ``ReadingHistoryManager`` replaces the server's history manager so that each node gets its own
  status: Bad_HistoryOperationUnsupported for a variable that is not stored, Bad_NodeIdUnknown
  for no variable at all, Good_NoData for an empty range.
- ``HistorizingBuilder`` extends the address space builder: it adds the archive variables under
  their meter objects and marks stored variables Historizing with AccessLevel HistoryRead.

Time range (OPC 10000-11 §6.5.3): the start time is inclusive, the end time exclusive. Start before
end (or no end) reads forward; start after end, or no start, reads newest first.
At most ``max_values`` values (or ``NumValuesPerNode``) come per call, with a continuation point
(the next value's time) when more remain. Bounding values (``ReturnBounds``) are not returned.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Server, ua
from asyncua.server.history import HistoryManager, HistoryStorageInterface
from asyncua.server.internal_server import InternalServer

from bridge.config.model import SiteMapping
from bridge.publishers.opcua_space import AddressSpace, AddressSpaceBuilder, NodeSignature
from bridge.storage.archive_tags import archive_tags
from bridge.storage.model import ArchiveKind, ReadingStore, StorageError
from bridge.storage.recorder import stored_tags
from bridge.tags.model import Scalar

log = logging.getLogger(__name__)

#: values per HistoryRead call and node when the client asks for no fewer
MAX_VALUES = 1000
_HISTORY_ACCESS = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask
_MIN_TIME = ua.get_win_epoch()  # DateTime.MinValue: "no time given"
_MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)  # the store's time resolution
_CONTINUATION = struct.Struct("<q")  # microseconds since 1970 of the next value to return

Row = tuple[datetime, Scalar, int]  # source time, value, OPC UA status code


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    """History of a stored tag: its readings."""

    key: str
    variant_type: ua.VariantType

    async def fetch(
        self, store: ReadingStore, lower: datetime, upper: datetime, limit: int | None
    ) -> list[Row]:
        """Rows with ``lower <= time < upper``, oldest first, at most ``limit``."""
        readings = await store.history(self.key, lower, upper, limit)
        return [(r.source_time, r.value, r.quality.status_code) for r in readings]

    async def latest(self, store: ReadingStore) -> datetime | None:
        """Time of the newest stored reading (None: never stored)."""
        last = (await store.last_values([self.key])).get(self.key)
        return last.source_time if last is not None else None


@dataclass(frozen=True, slots=True)
class ArchiveSeries:
    """History of an archive tag: one channel of a meter's daily or profile records."""

    meter: str
    kind: ArchiveKind
    channel: str
    variant_type: ua.VariantType = ua.VariantType.Double

    async def fetch(
        self, store: ReadingStore, lower: datetime, upper: datetime, limit: int | None
    ) -> list[Row]:
        """Records with ``lower <= time < upper``, oldest first, at most ``limit``."""
        records = await store.archive(self.meter, self.kind, lower, upper, self.channel)
        rows = [(r.timestamp, r.value, 0) for r in records]
        return rows if limit is None else rows[:limit]

    async def latest(self, store: ReadingStore) -> datetime | None:
        """Not known without a scan: None (the caller reads back in windows)."""
        return None


HistorySource = ReadingSeries | ArchiveSeries


@dataclass(frozen=True, slots=True)
class _Query:
    """One page of a raw read: the range ``lower <= t < upper``, its direction and size."""

    lower: datetime
    upper: datetime
    newest_first: bool
    size: int


class HistoryReadRefused(Exception):
    """A HistoryRead that cannot be answered; ``code`` is the StatusCode to return."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _given(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None if moment <= _MIN_TIME else moment


def plan_query(
    start: datetime | None, end: datetime | None, count: int, continuation: datetime | None, max_values: int
) -> _Query:
    """The range, direction and page size of a raw read (see the module docstring)."""
    start, end = _given(start), _given(end)
    size = min(count, max_values) if count > 0 else max_values
    if start is not None and (end is None or start <= end):
        upper = _MAX_TIME if end is None else max(end, start + _TICK)  # start == end: that instant
        return _Query(continuation or start, upper, False, size)
    if end is None:
        raise HistoryReadRefused(
            ua.StatusCodes.BadHistoryOperationInvalid, "neither a start time nor an end time given"
        )
    if start is None:  # the newest values before the end time
        lower, upper = _MIN_TIME, end
    else:  # start after end: end < t <= start, newest first
        lower, upper = end + _TICK, start + _TICK
    if continuation is not None:
        upper = continuation + _TICK
    return _Query(lower, upper, True, size)


async def _newest(source: HistorySource, store: ReadingStore, query: _Query, want: int) -> list[Row]:
    """The newest ``want`` rows of the range, newest first, reading back in growing windows.

    The store reads oldest first, so the range is read from its end in windows that double; a
    series that knows its newest time starts there, so a tag no longer stored costs no empty
    windows and the first window holds recent values only.
    """
    rows: list[Row] = []
    upper, span = query.upper, timedelta(days=1)
    latest = await source.latest(store)
    if latest is not None and latest < upper:
        upper = latest + _TICK
    while len(rows) < want and upper > query.lower:
        lower = query.lower if upper - query.lower <= span else upper - span
        rows.extend(reversed(await source.fetch(store, lower, upper, None)))
        upper, span = lower, span * 2
    return rows[:want]


def encode_continuation(moment: datetime) -> bytes:
    """A continuation point: the time of the next value to return."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return _CONTINUATION.pack(delta // _TICK)


def decode_continuation(point: bytes) -> datetime:
    """Inverse of ``encode_continuation``; raises ``HistoryReadRefused`` for a foreign point."""
    if len(point) != _CONTINUATION.size:
        raise HistoryReadRefused(ua.StatusCodes.BadContinuationPointInvalid, "unknown continuation point")
    micros: int = _CONTINUATION.unpack(point)[0]
    return datetime(1970, 1, 1, tzinfo=UTC) + _TICK * micros


class ReadingHistory(HistoryStorageInterface):
    """asyncua history storage over a ReadingStore (``readings`` None: nothing is historized)."""

    def __init__(self, readings: ReadingStore | None, max_values: int = MAX_VALUES) -> None:
        super().__init__(max_values)
        self.readings = readings
        self.sources: dict[ua.NodeId, HistorySource] = {}
        self._bad_values: set[ua.NodeId] = set()

    @property
    def enabled(self) -> bool:
        """True when a ReadingStore serves history."""
        return self.readings is not None

    def serve(self, sources: Mapping[ua.NodeId, HistorySource]) -> None:
        """Serve these nodes from now on (a new or reloaded address space)."""
        self.sources = dict(sources)

    async def read_page(
        self, node_id: ua.NodeId, details: ua.ReadRawModifiedDetails, continuation: bytes | None
    ) -> tuple[list[ua.DataValue], bytes | None]:
        """One page of raw values and the continuation point for the next (None: no more)."""
        source = self.sources.get(node_id)
        if source is None or self.readings is None:
            raise HistoryReadRefused(ua.StatusCodes.BadHistoryOperationUnsupported, "not historized")
        resume = decode_continuation(continuation) if continuation else None
        query = plan_query(
            details.StartTime, details.EndTime, details.NumValuesPerNode, resume,
            self.max_history_data_response_size,
        )
        want = query.size + 1  # one more tells whether a next page exists
        try:
            if query.newest_first:
                rows = await _newest(source, self.readings, query, want)
            else:
                rows = await source.fetch(self.readings, query.lower, query.upper, want)
        except StorageError as exc:
            log.error("OPC UA history of %s: %s", node_id.to_string(), exc)
            raise HistoryReadRefused(ua.StatusCodes.BadResourceUnavailable, str(exc)) from exc
        more = rows[query.size] if len(rows) > query.size else None
        values = [self._data_value(node_id, source, row) for row in rows[: query.size]]
        return values, (encode_continuation(more[0]) if more is not None else None)

    def _data_value(self, node_id: ua.NodeId, source: HistorySource, row: Row) -> ua.DataValue:
        moment, value, code = row
        try:
            variant = ua.Variant(_convert(value, source.variant_type), source.variant_type)
        except (TypeError, ValueError):
            if node_id not in self._bad_values:  # logged once per node
                self._bad_values.add(node_id)
                log.error("OPC UA history of %s: stored value %r does not fit %s",
                          node_id.to_string(), value, source.variant_type.name)
            variant, code = ua.Variant(None, ua.VariantType.Null), ua.StatusCodes.BadTypeMismatch
        return ua.DataValue(variant, StatusCode=ua.StatusCode(code), SourceTimestamp=moment)

    # -- asyncua's HistoryStorageInterface ------------------------------------------------------
    async def init(self) -> None:
        """Nothing to prepare: the ReadingStore is opened by the app."""

    async def stop(self) -> None:
        """Nothing to release: the ReadingStore is closed by the app."""

    async def new_historized_node(self, node_id: ua.NodeId, period: timedelta | None, count: int = 0) -> None:
        """Refused: history comes from the ReadingStore, not from server-side subscriptions."""
        raise ua.UaError("history is served from the reading store; nodes are not historized in memory")

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        """Values are stored by the StoreRecorder; nothing to do."""

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        """The asyncua interface: a raw read as ``read_page``, continuation as the next value's time."""
        details = ua.ReadRawModifiedDetails(
            StartTime=start or _MIN_TIME, EndTime=end or _MIN_TIME, NumValuesPerNode=nb_values
        )
        try:
            values, point = await self.read_page(node_id, details, None)
        except HistoryReadRefused:
            return [], None
        return values, (decode_continuation(point) if point else None)

    async def new_historized_event(
        self, source_id: ua.NodeId, evtypes: list[Any], period: timedelta | None, count: int = 0
    ) -> None:
        """Events are not historized."""
        raise ua.UaError("event history is not served")

    async def save_event(self, event: Any) -> None:
        """Events are not historized."""

    async def read_event_history(
        self, source_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int,
        evfilter: ua.EventFilter,
    ) -> tuple[list[Any], datetime | None]:
        """Events are not historized: nothing."""
        return [], None


class ReadingHistoryManager(HistoryManager):
    """asyncua's history manager with a status per node (see the module docstring)."""

    def __init__(self, iserver: InternalServer, history: ReadingHistory) -> None:
        super().__init__(iserver)
        self.storage = history
        self.history = history

    async def read_history(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        """Answer each node of a HistoryRead request."""
        return [await self._read_one(params, rv) for rv in params.NodesToRead]

    async def _read_one(
        self, params: ua.HistoryReadParameters, rv: ua.HistoryReadValueId
    ) -> ua.HistoryReadResult:
        result = ua.HistoryReadResult()
        details = params.HistoryReadDetails
        try:
            if rv.NodeId not in self.iserver.aspace:
                raise HistoryReadRefused(ua.StatusCodes.BadNodeIdUnknown, "no such node")
            if not isinstance(details, ua.ReadRawModifiedDetails) or details.IsReadModified:
                raise HistoryReadRefused(ua.StatusCodes.BadHistoryOperationUnsupported, "raw reads only")
            if params.ReleaseContinuationPoints:
                return result  # stateless continuation points: nothing to release
            values, point = await self.history.read_page(rv.NodeId, details, rv.ContinuationPoint)
        except HistoryReadRefused as refused:
            result.StatusCode = ua.StatusCode(refused.code)
            return result
        result.HistoryData = ua.HistoryData(DataValues=values)
        result.ContinuationPoint = point
        if not values:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.GoodNoData)
        return result


async def install_history(server: Server, history: ReadingHistory) -> None:
    """Serve HistoryRead from ``history`` and say so in the server's HistoryServerCapabilities."""
    server.iserver.history_manager = ReadingHistoryManager(server.iserver, history)
    capabilities = (
        (ua.ObjectIds.HistoryServerCapabilities_AccessHistoryDataCapability,
         ua.Variant(history.enabled, ua.VariantType.Boolean)),
        (ua.ObjectIds.HistoryServerCapabilities_MaxReturnDataValues,
         ua.Variant(history.max_history_data_response_size, ua.VariantType.UInt32)),
    )
    for node, value in capabilities:
        if ua.NodeId(node) in server.iserver.aspace:
            await server.write_attribute_value(ua.NodeId(node), ua.DataValue(value))


class HistorizingBuilder(AddressSpaceBuilder):
    """The address space builder plus archive variables and Historizing flags.

    Archive variables (``archive_tags``) sit under their meter object beside the mapped tags,
    NodeId = TagStore key, Double, value = the newest record. Whether a node is historized is
    part of its signature, so a reload that changes storage replaces the node.
    """

    def __init__(self, server: Server, namespace_index: int, history: ReadingHistory) -> None:
        super().__init__(server, namespace_index)
        self._history = history
        self._sources: dict[ua.NodeId, HistorySource] = {}

    def plan(self, mapping: SiteMapping) -> None:
        """The mapping's nodes, then the archive variables, then the Historizing flags."""
        super().plan(mapping)
        self._sources = {}
        if not self._history.enabled:
            return
        for tag in archive_tags(mapping):
            node_id = self._sid(tag.key)
            self._variable(tag.key, node_id, self._sid(tag.meter), tag.name, ua.VariantType.Double,
                           tag.description, tag.unit)
            self._sources[node_id] = ArchiveSeries(tag.meter, tag.kind, tag.channel)
        for key in stored_tags(mapping):
            var = self._variables.get(key)
            if var is not None:
                self._sources[var.node_id] = ReadingSeries(key, var.variant_type)
        for item in self._items:
            if item.RequestedNewNodeId in self._sources:
                attrs = item.NodeAttributes
                attrs.Historizing = True
                attrs.AccessLevel = attrs.UserAccessLevel = _HISTORY_ACCESS

    async def build(self, mapping: SiteMapping, keep: Iterable[ua.NodeId] = ()) -> AddressSpace:
        """Build as the base class does, then serve the history of the new nodes."""
        space = await super().build(mapping, keep)
        space.nodes = self._flagged(space.nodes)
        self._history.serve(self._sources)
        return space

    def signatures(self, mapping: SiteMapping) -> dict[ua.NodeId, NodeSignature]:
        """The base signatures plus whether the node is historized."""
        return self._flagged(super().signatures(mapping))

    def _flagged(self, nodes: dict[ua.NodeId, NodeSignature]) -> dict[ua.NodeId, NodeSignature]:
        return {node_id: (*sig, node_id in self._sources) for node_id, sig in nodes.items()}


def _convert(value: Scalar, variant: ua.VariantType) -> object:
    if value is None:
        raise TypeError("no value")
    if variant is ua.VariantType.Double:
        if isinstance(value, str):
            raise TypeError("text for a number")
        return float(value)
    if variant in (ua.VariantType.UInt32, ua.VariantType.Int32):
        if isinstance(value, str):
            raise TypeError("text for a number")
        return int(value)
    if variant is ua.VariantType.Boolean:
        return bool(value)
    return value if isinstance(value, str) else str(value)
