"""The sandbox's agent launcher (ringrift_sandbox.agents) against a stand-in sandbox: a shared
token made once, one healthy agent process per node advertised through the kubeconfig, a pull
between two of them, and a clean stop."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ringrift_operator.agent.client import AgentClient, PullState
from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT
from ringrift_operator.managers.syncplanning import FileEntry
from ringrift_sandbox.agents import ensure_agent_token, start_agents
from ringrift_sandbox.cluster import SandboxError


@dataclass
class StandInSandbox:
    """What start_agents uses of a Sandbox, over a fake API server that records Node patches."""

    directory: Path
    nodes: str
    api_url: str
    annotations: dict[str, dict[str, str]]

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def node_data_dir(self, node: str) -> Path:
        return self.directory / "nodes" / node / "data"

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def get(self, path: str) -> Any:
        assert path == "/api/v1/nodes"
        return {
            "items": [
                {"metadata": {"name": name, "annotations": dict(values)}}
                for name, values in list(self.annotations.items())
            ]
        }


@pytest.fixture
async def stand_in(tmp_path: Path, start_app: Any) -> StandInSandbox:
    annotations: dict[str, dict[str, str]] = {}

    async def patch(request: web.Request) -> web.Response:
        body = await request.json()
        annotations.setdefault(request.match_info["name"], {}).update(
            body["metadata"]["annotations"]
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_patch("/api/v1/nodes/{name}", patch)
    sandbox = StandInSandbox(tmp_path, "cpu:2", await start_app(app), annotations)
    sandbox.kubeconfig.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": sandbox.api_url}}],
                "users": [{"name": "u", "user": {"token": "admin"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return sandbox


def test_token_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = ensure_agent_token(tmp_path)
    first = path.read_text()
    assert len(first.strip()) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_agent_token(tmp_path).read_text() == first
    assert ensure_agent_token(tmp_path, token="x" * 32).read_text().strip() == "x" * 32


async def test_one_agent_per_node_advertised_pulling_and_stopped(
    stand_in: StandInSandbox, session: aiohttp.ClientSession
) -> None:
    fleet = await asyncio.to_thread(start_agents, stand_in, timeout=60)  # type: ignore[arg-type]
    try:
        urls = fleet.urls()
        assert sorted(urls) == ["cpu-0", "cpu-1"]
        for node, url in urls.items():
            assert stand_in.annotations[node][ANNOTATION_AGENT_ENDPOINT] == url
        content = b"a game\n" * 1000
        (stand_in.node_data_dir("cpu-0") / "games/sq").mkdir(parents=True)
        (stand_in.node_data_dir("cpu-0") / "games/sq/g.jsonl").write_bytes(content)
        target = AgentClient(base_url=urls["cpu-1"], token=fleet.token, session=session)
        wanted = FileEntry(
            "games/sq/g.jsonl", len(content), 1_700_000_000.0, hashlib.sha256(content).hexdigest()
        )
        report = await target.pull(source_url=urls["cpu-0"], files=[wanted])
        assert report.results[0].state == PullState.DONE
        assert (stand_in.node_data_dir("cpu-1") / "games/sq/g.jsonl").read_bytes() == content
        assert set(fleet.pids()) == {"agent-cpu-0", "agent-cpu-1"}
    finally:
        await asyncio.to_thread(fleet.stop)
    assert [a.process.returncode for a in fleet] == [0, 0]  # SIGTERM: a clean exit


async def test_agent_that_cannot_start_is_reported_with_its_log(
    stand_in: StandInSandbox,
) -> None:
    stand_in.kubeconfig.unlink()  # the agents exit at once: no credentials to advertise with
    with pytest.raises(SandboxError, match=r"agent of cpu-\d exited(.|\n)*kubeconfig"):
        await asyncio.to_thread(start_agents, stand_in, timeout=30)  # type: ignore[arg-type]
