"""``ringrift-operator agent``: flags and usage errors, serve() advertising its endpoint, and the
real process: healthy, advertised through a kubeconfig, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ringrift_operator.agent.client import KubeAccess
from ringrift_operator.agent.scanner import Scanner
from ringrift_operator.agent.server import (
    build_app,
    default_advertise_url,
    main,
    parse_listen,
    serve,
)
from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT

TOKEN = "0123456789abcdef0123456789abcdef"


class FakeApiServer:
    """A Kubernetes API server that accepts Node PATCHes and remembers the annotations."""

    def __init__(self) -> None:
        self.annotations: dict[str, dict[str, str]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_patch("/api/v1/nodes/{name}", self.patch)
        return app

    async def patch(self, request: web.Request) -> web.Response:
        body = await request.json()
        node = self.annotations.setdefault(request.match_info["name"], {})
        node.update(body["metadata"]["annotations"])
        return web.json_response({"kind": "Node"})


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Poll ``check`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--data-dir", "d"], "--node is required", id="no-node"),
        pytest.param(["--node", "n", "--listen", "nope"], "HOST:PORT", id="bad-listen"),
        pytest.param(["--node", "n", "--listen", "h:70000"], "HOST:PORT", id="bad-port"),
        pytest.param(["--node", "n"], "no agent token", id="no-token"),
        pytest.param(["--node", "n", "--max-files-per-job", "0"], "at least 1", id="zero-files"),
        pytest.param(["--bogus"], "unrecognized", id="unknown-flag"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.delenv("RINGRIFT_AGENT_TOKEN", raising=False)
    assert main([*argv, "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ringrift-operator agent: error:")
    assert message in err


def test_missing_kubeconfig_exits_2(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "token").write_text(TOKEN)
    argv = [
        "--node",
        "n",
        "--data-dir",
        str(tmp_path / "d"),
        "--token-file",
        str(tmp_path / "token"),
    ]
    assert main([*argv, "--kubeconfig", str(tmp_path / "missing")]) == 2
    assert "kubeconfig" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8470", ("127.0.0.1", 8470)),
        (":9000", ("0.0.0.0", 9000)),
        ("[::1]:8470", ("::1", 8470)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("host", "env", "expected"),
    [
        ("127.0.0.1", {}, "http://127.0.0.1:8470"),
        ("0.0.0.0", {"POD_IP": "10.1.2.3"}, "http://10.1.2.3:8470"),
        ("::", {"POD_IP": "fd00::5"}, "http://[fd00::5]:8470"),
    ],
)
def test_default_advertise_url(host: str, env: dict[str, str], expected: str) -> None:
    assert default_advertise_url(host, 8470, env=env) == expected


# --- serve() -------------------------------------------------------------------------------------


async def test_serve_advertises_its_bound_url_and_stops(
    tmp_path: Path, start_app: Any, session: aiohttp.ClientSession
) -> None:
    api = FakeApiServer()
    kube = KubeAccess(server=await start_app(api.app()), token="admin")
    app = build_app(scanner=Scanner(tmp_path, node="gpu-1"), token=TOKEN)
    stop = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(
        serve(
            app=app,
            host="127.0.0.1",
            port=0,
            node="gpu-1",
            kube=kube,
            stop=stop,
            on_listening=urls.append,
        )
    )

    async def advertised() -> bool:
        return ANNOTATION_AGENT_ENDPOINT in api.annotations.get("gpu-1", {})

    await until(advertised, timeout=10, what="the annotation")
    (url,) = urls
    assert api.annotations["gpu-1"][ANNOTATION_AGENT_ENDPOINT] == url
    async with session.get(url + "/healthz") as r:
        assert (await r.json())["node"] == "gpu-1"
    stop.set()
    await asyncio.wait_for(task, timeout=10)


# --- the process ---------------------------------------------------------------------------------


async def test_agent_process_serves_advertises_and_stops_on_sigterm(
    tmp_path: Path, start_app: Any, session: aiohttp.ClientSession
) -> None:
    api = FakeApiServer()
    kubeconfig = {
        "clusters": [{"name": "c", "cluster": {"server": await start_app(api.app())}}],
        "users": [{"name": "u", "user": {"token": "admin"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "data/games/sq").mkdir(parents=True)
    (tmp_path / "data/games/sq/a.jsonl").write_bytes(b"game")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ringrift_operator.cli",
        "agent",
        "--node=gpu-1",
        f"--data-dir={tmp_path / 'data'}",
        f"--listen=127.0.0.1:{port}",
        f"--token-file={tmp_path / 'token'}",
        f"--kubeconfig={tmp_path / 'kubeconfig'}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        async def healthy() -> bool:
            assert process.returncode is None, "the agent exited"
            try:
                async with session.get(url + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        async def advertised() -> bool:
            return api.annotations.get("gpu-1", {}).get(ANNOTATION_AGENT_ENDPOINT) == url

        await until(healthy, timeout=30, what="/healthz")
        await until(advertised, timeout=30, what="the annotation")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(url + "/v1/manifest", headers=headers) as r:
            assert [f["path"] for f in (await r.json())["files"]] == ["games/sq/a.jsonl"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
        assert process.stderr is not None
        assert b"Traceback" not in await process.stderr.read()
        assert (tmp_path / "data/.agent/hashes.json").is_file()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
