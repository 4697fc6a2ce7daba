"""Fixtures for the node agent's tests: real agents served in-process on 127.0.0.1, a shared
token, a client session, and a writer of data files with chosen mtimes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ringrift_operator.agent.client import AgentClient
from ringrift_operator.agent.scanner import Scanner
from ringrift_operator.agent.server import AgentSettings, build_app

TOKEN = "0123456789abcdef0123456789abcdef"


@dataclass
class RunningAgent:
    """An agent serving ``data_dir`` at ``url``."""

    node: str
    url: str
    data_dir: Path
    scanner: Scanner
    client: AgentClient


StartAgent = Callable[..., Awaitable[RunningAgent]]
StartApp = Callable[[web.Application], Awaitable[str]]


def write_file(data_dir: Path, rel: str, content: bytes, *, mtime: float | None = None) -> str:
    """Write a data file (parents made), optionally with an mtime; returns its sha256."""
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """Serve any aiohttp application on 127.0.0.1 (a free port); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def start_agent(
    tmp_path: Path, start_app: StartApp, session: aiohttp.ClientSession
) -> StartAgent:
    """Start an agent for ``node`` over ``tmp_path/<node>`` (settings and scanner overridable)."""

    async def start(
        node: str = "node-a",
        *,
        settings: AgentSettings | None = None,
        scanner: Scanner | None = None,
    ) -> RunningAgent:
        data_dir = tmp_path / node
        data_dir.mkdir(parents=True, exist_ok=True)
        scanner = scanner or Scanner(data_dir, node=node)
        app = build_app(scanner=scanner, token=TOKEN, settings=settings)
        url = await start_app(app)
        client = AgentClient(base_url=url, token=TOKEN, session=session)
        return RunningAgent(node, url, scanner.data_dir, scanner, client)

    return start


@pytest.fixture
def write() -> Callable[..., str]:
    """``write(data_dir, rel, content, mtime=None) -> sha256``."""
    return write_file
