"""The status HTTP server: ``/`` page, ``/api/status`` JSON, ``/metrics``, ``/health``.

Binds to 127.0.0.1 by default. With a username and password hash configured (``<status>``), every
path but ``/health`` asks for HTTP basic authentication.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from bridge.config.model import SiteMapping, StatusSettings
from bridge.status.metrics import BridgeMetrics
from bridge.status.passwords import verify_password
from bridge.tags import TagStore
from bridge.tags.keys import (
    CHANNEL_DIAG_FIELDS,
    METER_DIAG_FIELDS,
    channel_diag_key,
    meter_diag_key,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: returns (ok, list of error lines) — the app's reload
ReloadHook = Callable[[], Awaitable[tuple[bool, list[str]]]]
#: returns True while the servers run
HealthHook = Callable[[], dict[str, Any]]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def status_document(mapping: SiteMapping, store: TagStore) -> dict[str, Any]:
    """The JSON the status page shows: channels, meters with their tags and diagnostics."""
    now = datetime.now(UTC)
    channels = []
    for ch in mapping.channels:
        diag = {}
        for f in CHANNEL_DIAG_FIELDS:
            tv = store.get(channel_diag_key(ch.name, f))
            diag[f] = tv.value if tv else None
        channels.append({"name": ch.name, "kind": ch.kind.value, **diag})
    meters = []
    for m in mapping.meters:
        diag = {}
        for f in METER_DIAG_FIELDS:
            tv = store.get(meter_diag_key(m.name, f))
            diag[f] = tv.value if tv else None
        tags = []
        for t in mapping.tags_of(m.name):
            tv = store.get(t.key)
            reg = mapping.register_of(m, t.register)
            age = (now - tv.source_time).total_seconds() if tv and tv.source_time else None
            tags.append(
                {
                    "name": t.name,
                    "value": tv.value if tv else None,
                    "unit": t.unit if t.unit is not None else reg.unit,
                    "quality": tv.quality.name if tv else "Bad_WaitingForInitialData",
                    "source_time": _iso(tv.source_time) if tv else None,
                    "age_s": round(age, 1) if age is not None else None,
                }
            )
        meters.append(
            {"name": m.name, "channel": m.channel, "model": m.model, "address": m.address,
             "diag": diag, "tags": tags}
        )
    return {"time": now.isoformat(), "channels": channels, "meters": meters}


class StatusServer:
    """aiohttp application serving the status page, metrics and health."""

    def __init__(
        self,
        settings: StatusSettings,
        mapping_ref: Callable[[], SiteMapping],
        store: TagStore,
        metrics: BridgeMetrics,
        health: HealthHook,
        reload: ReloadHook | None = None,
    ) -> None:
        self._settings = settings
        self._mapping_ref = mapping_ref
        self._store = store
        self._metrics = metrics
        self._health = health
        self._reload = reload
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/metrics", self._metrics_view)
        app.router.add_get("/health", self._health_view)
        app.router.add_post("/api/reload", self._reload_view)
        return app

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        s = self._settings
        if s.username is None or s.password_hash is None or request.path == "/health":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            # argon2 takes tens of milliseconds: keep it off the event loop that polls the meters
            if user == s.username and await asyncio.to_thread(
                verify_password, s.password_hash.reveal().decode(), password
            ):
                return await handler(request)
        return web.Response(
            status=401, text="authentication required",
            headers={"WWW-Authenticate": 'Basic realm="milur-bridge"'},
        )

    async def _page(self, request: web.Request) -> web.Response:
        html = resources.files("bridge.status").joinpath("page.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(status_document(self._mapping_ref(), self._store))

    async def _metrics_view(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")

    async def _health_view(self, request: web.Request) -> web.Response:
        summary = self._health()
        return web.json_response(summary, status=200 if summary.get("ok") else 503)

    async def _reload_view(self, request: web.Request) -> web.Response:
        if self._reload is None:
            return web.json_response({"ok": False, "errors": ["reload not available"]}, status=501)
        ok, errors = await self._reload()
        return web.json_response({"ok": ok, "errors": errors}, status=200 if ok else 422)

    async def start(self) -> None:
        """Bind and serve."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the bound port when 0 was asked for
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("status page on http://%s:%d/", self._settings.host, self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
