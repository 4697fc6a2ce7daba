"""No watch stalls silently: a watch that receives nothing — no event, no bookmark — is
restarted within its bound, whether the stream is open but quiet or the connection hangs; and
kopf's own watches get the same bounds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf
import pytest
from aiohttp import web

from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.handlers.main import configure_kopf
from ringrift_operator.kube.cache import Reflector
from ringrift_operator.kube.client import Credentials, KubeClient, watch_server_timeout

STALL = 0.4


class QuietClient:
    """Lists fine; its watches deliver ``events`` (BOOKMARK every ``every`` seconds, ``count``
    times) and then hang forever without ending."""

    def __init__(self, *, count: int = 0, every: float = 0.1) -> None:
        self.lists = 0
        self.watches: list[float] = []  # monotonic start of each watch
        self.count = count
        self.every = every

    async def list_all(self, path: str, *, params: Any = None) -> dict[str, Any]:
        self.lists += 1
        return {"items": [], "metadata": {"resourceVersion": "7"}}

    async def watch(self, path: str, **_: Any) -> AsyncIterator[dict[str, Any]]:
        self.watches.append(time.monotonic())
        for _ in range(self.count):
            await asyncio.sleep(self.every)
            yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}}
        await asyncio.Event().wait()
        yield {}  # never reached


def reflector(client: Any) -> Reflector:
    return Reflector(
        client, path="/api/v1/nodes", kind="nodes", on_upsert=lambda o: None,
        on_delete=lambda o: None, on_relist=lambda items: None, stall_seconds=STALL,
    )  # fmt: skip


async def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def running(r: Reflector, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(r.run())
    try:
        await body()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_watch_that_receives_nothing_is_restarted_within_its_bound() -> None:
    client = QuietClient()
    r = reflector(client)

    async def body() -> None:
        await wait_until(lambda: len(client.watches) >= 3, timeout=5, what="three watches")

    await running(r, body)
    assert r.stalls >= 2
    first, second = client.watches[:2]
    # stalled after STALL seconds, restarted after the backoff (0.5 s, then 1 s)
    assert STALL <= second - first <= STALL + 0.5 + 0.5
    assert client.lists >= 2, "a restarted watch relists: nothing missed while it was quiet"
    assert r.health()["stalls"] == r.stalls


def test_quiet_watches_end_server_side_well_within_the_stall_bound() -> None:
    # kube-apiserver bookmarks a quiet watch only every 60-120 s
    assert watch_server_timeout(90) == 60
    assert watch_server_timeout(600) == 60
    assert watch_server_timeout(5) == 3
    assert watch_server_timeout(1) == 1


async def test_bookmarks_keep_a_quiet_watch_alive() -> None:
    client = QuietClient(count=12, every=STALL / 4)  # bookmarks for ~1.2 s, then silence
    r = reflector(client)

    async def body() -> None:
        await asyncio.sleep(STALL * 2.5)
        assert r.stalls == 0, "bookmarks arriving: no restart"
        assert len(client.watches) == 1
        await wait_until(lambda: r.stalls >= 1, timeout=5, what="the stall after the bookmarks")

    await running(r, body)


# --- the real client against a server that hangs ---------------------------------------------


async def hanging_server(*, headers: bool) -> tuple[web.AppRunner, str, list[str]]:
    """An API server stand-in: lists answer; watches hang — after sending the response headers
    (an open, silent stream) or before (a connection that never answers)."""
    seen: list[str] = []

    async def nodes(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response({"items": [], "metadata": {"resourceVersion": "7"}})
        seen.append(request.query_string)
        if headers:
            response = web.StreamResponse()
            await response.prepare(request)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/api/v1/nodes", nodes)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


@pytest.mark.parametrize("headers", [True, False], ids=["silent-stream", "no-response"])
async def test_the_client_gives_up_on_a_hung_watch(headers: bool) -> None:
    runner, server, seen = await hanging_server(headers=headers)
    client = await KubeClient.connect(Credentials(server=server))
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            async for _ in client.watch("/api/v1/nodes", resource_version="7",
                                        stall_seconds=STALL):  # fmt: skip
                pass
        assert STALL <= time.monotonic() - t0 < STALL + 1.0
        assert "allowWatchBookmarks=true" in seen[0]
        assert "timeoutSeconds=1" in seen[0], "the server ends every watch, well within the bound"
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_reflector_on_a_hung_connection_restarts_its_watch() -> None:
    runner, server, seen = await hanging_server(headers=True)
    client = await KubeClient.connect(Credentials(server=server))
    r = reflector(client)
    try:

        async def body() -> None:
            await wait_until(lambda: len(seen) >= 2, timeout=5, what="the watch restarted")

        await running(r, body)
        assert r.stalls >= 1
    finally:
        await client.close()
        await runner.cleanup()


# --- kopf's watches and the shutdown deadline --------------------------------------------------


def test_kopf_watches_and_shutdown_are_bounded() -> None:
    settings = kopf.OperatorSettings()
    ours = OperatorSettings(watch_stall_seconds=45, shutdown_timeout_seconds=7)
    configure_kopf(settings, ours)
    assert settings.watching.inactivity_timeout == 45  # no event, no bookmark: reconnect
    assert settings.watching.server_timeout == 30  # a healthy quiet watch ends before 45 s
    assert settings.watching.client_timeout == 75
    assert settings.watching.connect_timeout == 10
    assert settings.networking.connect_timeout == 10
    assert settings.networking.request_timeout == 30
    assert settings.process.ultimate_exiting_timeout == 7


def test_the_exit_deadline_ends_a_stuck_process() -> None:
    code = (
        "import time\n"
        "from ringrift_operator.handlers.main import arm_exit_deadline\n"
        "arm_exit_deadline(0.3)\n"
        "while True: time.sleep(1)  # a shutdown that never finishes\n"
    )
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert done.returncode == 4
    assert time.monotonic() - t0 < 15
    assert b"shutdown did not finish" in done.stderr
