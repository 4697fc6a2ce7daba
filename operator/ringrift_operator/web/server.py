"""The operator's HTTP endpoints: ``/healthz`` (the process and its event loop answer),
``/readyz`` (a standby waiting for the Lease, or a leader whose caches are synced),
``/metrics`` (Prometheus text from the operator's own registry) and ``/status`` (JSON: role,
epoch, leader, and the health of every manager and loop — the seed's ``/status``).

Started before leader election so that probes answer on standbys too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

StatusFn = Callable[[], dict[str, Any]]
ReadyFn = Callable[[], tuple[bool, str]]


def build_app(
    *, status: StatusFn, ready: ReadyFn, registry: Callable[[], CollectorRegistry | None]
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = ready()
        return web.Response(text=why or ("ok" if ok else "not ready"), status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        reg = registry()
        body = generate_latest(reg) if reg is not None else b""
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_(_: web.Request) -> web.Response:
        try:
            doc = status()
        except Exception as e:  # /status must answer even when a manager misbehaves
            log.exception("building /status failed")
            doc = {"status": "error", "error": repr(e)}
        return web.Response(
            text=json.dumps(doc, indent=2, default=str), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status_)
    return app


async def start_server(app: web.Application, *, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving /healthz /readyz /metrics /status on %s:%d", host, port)
    return runner
