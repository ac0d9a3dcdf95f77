# asyncua types ints/datetimes as NewTypes (Int32, UInt32, DateTime) and omits re-exports; checking
# every literal against them adds nothing but casts.
# mypy: disable-error-code="attr-defined,arg-type"
"""OPC UA server publisher (asyncua): a thin TagStore listener (DESIGN.md rule 5, docs/opcua.md).

``on_changes`` only files changes into a pending dict (the newest value per key wins) and wakes
one writer task; that task writes them with ``Server.write_attribute_value`` and a DataValue that
carries the tag's StatusCode, the meter's read time (SourceTimestamp) and the publish time
(ServerTimestamp). Only this task writes values, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from asyncua import Server, ua

from bridge.config.model import SecurityPolicy, SiteMapping
from bridge.publishers.opcua_history import HistorizingBuilder, ReadingHistory, install_history
from bridge.publishers.opcua_security import (
    POLICY_TYPES,
    PasswordUserManager,
    PkiPaths,
    TrustListValidator,
    identity_tokens,
    needs_certificate,
    server_certificate,
)
from bridge.publishers.opcua_space import (
    AddressSpace,
    PublishedVariable,
    unchanged_nodes,
)
from bridge.storage.model import ReadingStore
from bridge.tags import TagChange, TagStore, TagValue

log = logging.getLogger(__name__)

#: writes between two yields to the event loop in a large batch
WRITES_PER_YIELD = 40

_Written = tuple[object, int, datetime | None]


class OpcUaPublisher:
    """Serves the TagStore through an asyncua server built from the mapping.

    With ``readings``, stored tags and archive tags answer HistoryRead from it (opcua_history.py).
    """

    def __init__(self, mapping: SiteMapping, store: TagStore, readings: ReadingStore | None = None) -> None:
        self._mapping = mapping
        self._store = store
        self._history = ReadingHistory(readings)
        self._server: Server | None = None
        self._space = AddressSpace({}, {})
        self._ns = 0
        self._pending: dict[str, TagValue] = {}
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._written: dict[str, _Written] = {}
        self._bad_keys: set[str] = set()
        self._users: PasswordUserManager | None = None
        self._validator: TrustListValidator | None = None
        self._writes = 0
        self.port: int | None = None

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def server(self) -> Server:
        """The running asyncua server (for tests and the status page)."""
        if self._server is None:
            raise RuntimeError("OPC UA publisher is not started")
        return self._server

    @property
    def namespace_index(self) -> int:
        """Index of our namespace (``OpcUaSettings.namespace_uri``) once started."""
        return self._ns

    async def start(self) -> None:
        """Build the address space, apply the store's snapshot and start listening."""
        settings = self._mapping.opcua
        # asyncua's standard address space and ours are ~1M long-lived objects: pause the cyclic GC
        # while they are made (it would rescan the growing heap many times), then collect once and
        # freeze them out of every future GC pass.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            server = await self._create_server()
        finally:
            if gc_was_enabled:
                gc.enable()
        gc.collect()
        gc.freeze()
        try:
            await server.start()
        except OSError as exc:
            self._store.remove_listener(self)
            self._server = None
            log.error("OPC UA server cannot listen on %s: %s", settings.endpoint, exc)
            raise
        self.port = self._bound_port(server)
        self._writer = asyncio.create_task(self._write_loop(), name="opcua-writer")
        log.info(
            "OPC UA server listening on %s (%d variables, policies: %s)",
            self._endpoint_with_port(settings.endpoint),
            len(self._space.variables),
            ", ".join(p.value for p in settings.security),
        )

    async def _create_server(self) -> Server:
        settings = self._mapping.opcua
        self._users = PasswordUserManager(
            settings.users, settings.allow_anonymous, secure_only=SecurityPolicy.NONE not in settings.security
        )
        server = Server(user_manager=self._users)
        await server.init()
        await install_history(server, self._history)
        server.set_endpoint(settings.endpoint)
        server.set_server_name(settings.server_name)
        await server.set_application_uri(settings.application_uri)
        server.set_security_policy([POLICY_TYPES[p] for p in settings.security])
        server.set_identity_tokens(identity_tokens(settings))
        if needs_certificate(settings):
            pki = PkiPaths(Path(settings.pki_dir))
            pki.create()
            cert, key = await server_certificate(settings, pki)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            self._validator = TrustListValidator(pki)
            await self._validator.load()
            server.set_certificate_validator(self._validator)
        self._ns = await server.register_namespace(settings.namespace_uri)
        self._space = await HistorizingBuilder(server, self._ns, self._history).build(self._mapping)
        self._server = server
        self._apply(self._store.add_listener(self).items())
        await self._drain()
        return server

    async def stop(self) -> None:
        """Stop writing and close the server."""
        self._store.remove_listener(self)
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None
        if self._server is not None:
            iserver = self._server.iserver
            clock = iserver.time_task
            if clock is not None:  # asyncua's clock loop sleeps 1 s between ticks: do not wait for it
                clock.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock
                iserver.time_task = None
            await self._server.stop()
            # asyncua keeps the sessions of clients that vanished (for reactivation) until their
            # timeout, and its stop() leaves them running: close them, no task outlives the server
            orphans = getattr(iserver, "_external_sessions", {})
            for session in list(orphans.values()):
                with contextlib.suppress(Exception):
                    await session.close_session(True)
            self._server = None
        gc.unfreeze()

    async def apply_mapping(self, mapping: SiteMapping) -> None:
        """Reload: keep unchanged nodes (subscriptions on them go on), delete and add the rest.

        A change of the ``<opcua>`` settings other than the grouping (endpoint, security, users,
        certificates) restarts the server.
        """
        old_settings = self._mapping.opcua
        same = dataclasses.replace(mapping.opcua, grouping=old_settings.grouping, origin=old_settings.origin)
        if same != old_settings:
            log.info("OPC UA settings changed: restarting the OPC UA server")
            await self.stop()
            self._mapping = mapping
            self._space = AddressSpace({}, {})
            self._written.clear()
            await self.start()
            return
        server = self.server
        builder = HistorizingBuilder(server, self._ns, self._history)
        keep = unchanged_nodes(self._space.nodes, builder.signatures(mapping))
        gone = [n for n in self._space.nodes if n not in keep]
        if gone:
            await server.delete_nodes([server.get_node(n) for n in gone], recursive=False)
        new_space = await builder.build(mapping, keep=keep)
        self._mapping = mapping
        self._space = new_space
        for key in list(self._written):
            var = new_space.variables.get(key)
            if var is None or var.node_id not in keep:
                del self._written[key]  # a new node needs its current value written
        self._apply(self._store.snapshot().items())
        self._wakeup.set()
        log.info(
            "OPC UA address space reloaded: %d variables, %d nodes replaced or removed",
            len(new_space.variables),
            len(gone),
        )

    def metrics(self) -> dict[str, float]:
        """Figures for Prometheus (``BridgeMetrics.add_source``); names ending in _total count."""
        server = self._server
        clients = len(server.bserver.clients) if server is not None and server.bserver is not None else 0
        return {
            "milur_opcua_connections": float(clients),
            "milur_opcua_value_writes_total": float(self._writes),
            "milur_opcua_pending_values": float(len(self._pending)),
            "milur_opcua_refused_logins_total": float(self._users.refused if self._users else 0),
            "milur_opcua_refused_certificates_total": float(
                self._validator.refused if self._validator else 0
            ),
        }

    # -- listener -----------------------------------------------------------------------------
    def on_changes(self, changes: Sequence[TagChange]) -> None:
        """Queue a batch of changes for the writer task (returns at once)."""
        self._apply((c.key, c.value) for c in changes)
        self._wakeup.set()

    def _apply(self, items: Iterable[tuple[str, TagValue]]) -> None:
        variables = self._space.variables
        pending = self._pending
        for key, value in items:
            if key in variables:
                pending[key] = value

    # -- writer -------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._drain()
            except Exception:  # keep serving; the next change retries
                log.exception("OPC UA value write failed")

    async def _drain(self) -> None:
        server = self._server
        if server is None:
            return
        while self._pending:
            batch, self._pending = self._pending, {}
            now = datetime.now(UTC)
            count = 0
            for key, tv in batch.items():
                var = self._space.variables.get(key)
                if var is None:
                    continue
                written = (tv.value, tv.quality.value, tv.source_time)
                if self._written.get(key) == written:
                    continue  # same value, quality and read time: no new ServerTimestamp
                dv = self._data_value(var, tv, now)
                if dv is None:
                    continue
                await server.write_attribute_value(var.node_id, dv)
                self._written[key] = written
                self._writes += 1
                count += 1
                if count % WRITES_PER_YIELD == 0:
                    await asyncio.sleep(0)

    def _data_value(self, var: PublishedVariable, tv: TagValue, now: datetime) -> ua.DataValue | None:
        status = ua.StatusCode(tv.quality.status_code)
        if tv.value is None or tv.quality.is_bad:
            variant = ua.Variant(None, ua.VariantType.Null)
        else:
            try:
                variant = ua.Variant(_convert(tv.value, var.variant_type), var.variant_type)
            except (TypeError, ValueError):
                if var.key not in self._bad_keys:  # logged once per tag
                    self._bad_keys.add(var.key)
                    log.error(
                        "OPC UA: value %r of %s does not fit %s", tv.value, var.key, var.variant_type.name
                    )
                return None
        return ua.DataValue(variant, StatusCode=status, SourceTimestamp=tv.source_time, ServerTimestamp=now)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _bound_port(server: Server) -> int | None:
        return int(server.bserver.port) if server.bserver is not None else None

    def _endpoint_with_port(self, endpoint: str) -> str:
        url = urlparse(endpoint)
        if self.port is None or url.port == self.port:
            return endpoint
        return url._replace(netloc=f"{url.hostname}:{self.port}").geturl()


_INT_RANGES = {ua.VariantType.UInt32: (0, 0xFFFFFFFF), ua.VariantType.Int32: (-(2**31), 2**31 - 1)}


def _convert(value: float | int | str | bool | datetime, variant: ua.VariantType) -> object:
    if variant is ua.VariantType.Double:
        if isinstance(value, str):
            raise TypeError("text for a number")
        return float(value)
    if variant in _INT_RANGES:
        if isinstance(value, str):
            raise TypeError("text for a number")
        number = int(value)
        low, high = _INT_RANGES[variant]
        if not low <= number <= high:
            raise ValueError(f"out of {variant.name} range")
        return number
    if variant is ua.VariantType.Boolean:
        return bool(value)
    if isinstance(value, datetime):  # a date/time register: ISO 8601 text (docs/opcua.md)
        return value.isoformat()
    return value if isinstance(value, str) else str(value)
