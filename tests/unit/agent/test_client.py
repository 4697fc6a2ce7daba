"""AgentClient's typed errors, the wire format's strict parsing, and the agent's Kubernetes calls
(kubeconfig / in-cluster loading, the Node annotation) against a fake API server."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ringrift_operator.agent.client import (
    AgentAuthError,
    AgentClient,
    AgentProtocolError,
    AgentUnavailable,
    KubeAccess,
    KubeError,
    PullState,
    WireError,
    entry_from_wire,
    file_url,
    is_agent_url,
    load_in_cluster,
    load_kubeconfig,
    manifest_from_wire,
    patch_node_annotations,
    pull_report_from_wire,
    pull_request_from_wire,
)
from ringrift_operator.agent.server import advertise
from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT

SHA = "a" * 64


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def fake_app(status: int, body: bytes, content_type: str = "application/json") -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


# --- typed errors --------------------------------------------------------------------------------


async def test_healthz(start_agent: Any) -> None:
    agent = await start_agent("n7")
    assert await agent.client.healthz() == {"status": "ok", "node": "n7"}


async def test_unreachable_agent_is_unavailable(session: aiohttp.ClientSession) -> None:
    client = AgentClient(base_url=f"http://127.0.0.1:{closed_port()}", token="t", session=session)
    with pytest.raises(AgentUnavailable):
        await client.fetch_manifest()
    with pytest.raises(AgentUnavailable):
        await client.healthz()


async def test_slow_agent_times_out_as_unavailable(
    start_app: Any, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/v1/manifest", stuck)
    client = AgentClient(base_url=await start_app(app), token="t", session=session)
    try:
        with pytest.raises(AgentUnavailable, match="timed out"):
            await client.fetch_manifest(timeout=0.2)
    finally:
        release.set()


async def test_wrong_token_is_an_auth_error(
    start_agent: Any, session: aiohttp.ClientSession
) -> None:
    agent = await start_agent()
    client = AgentClient(base_url=agent.url, token="wrong-token-wrong-token", session=session)
    with pytest.raises(AgentAuthError) as caught:
        await client.fetch_manifest()
    assert caught.value.status == 401
    with pytest.raises(AgentAuthError):
        await client.pull(source_url=agent.url, files=[])


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        pytest.param(503, b'{"error": "busy"}', AgentUnavailable, "busy", id="503"),
        pytest.param(403, b"forbidden", AgentAuthError, "403", id="403"),
        pytest.param(404, b'{"error": "no route"}', AgentProtocolError, "no route", id="404"),
        pytest.param(200, b"<html>", AgentProtocolError, "not JSON", id="not-json"),
        pytest.param(200, b'{"node": "x"}', AgentProtocolError, "collectedAt", id="not-manifest"),
    ],
)
async def test_bad_answers_raise_typed_errors(
    start_app: Any,
    session: aiohttp.ClientSession,
    status: int,
    body: bytes,
    error: type[Exception],
    match: str,
) -> None:
    url = await start_app(fake_app(status, body))
    client = AgentClient(base_url=url, token="t", session=session)
    with pytest.raises(error, match=match):
        await client.fetch_manifest()


async def test_pull_report_that_is_not_the_protocol(
    start_app: Any, session: aiohttp.ClientSession
) -> None:
    url = await start_app(fake_app(200, b'{"node": "x", "source": "y", "results": [1]}'))
    client = AgentClient(base_url=url, token="t", session=session)
    with pytest.raises(AgentProtocolError, match="results"):
        await client.pull(source_url="http://127.0.0.1:1", files=[])


# --- the wire format -----------------------------------------------------------------------------


def test_manifest_from_wire_round_trip() -> None:
    doc = {
        "node": "n1",
        "collectedAt": 1_700_000_000,
        "files": [{"path": "games/c/a.jsonl", "size": 3, "mtime": 1.5, "sha256": SHA}],
    }
    manifest = manifest_from_wire(doc)
    assert manifest.node == "n1"
    assert manifest.collected_at == 1_700_000_000.0
    assert manifest.files["games/c/a.jsonl"].size == 3


@pytest.mark.parametrize(
    ("item", "field"),
    [
        pytest.param([], "expected an object", id="not-object"),
        pytest.param({"path": "", "size": 1, "mtime": 1, "sha256": SHA}, "path", id="empty-path"),
        pytest.param({"path": "a", "size": True, "mtime": 1, "sha256": SHA}, "size", id="bool"),
        pytest.param({"path": "a", "size": 1.5, "mtime": 1, "sha256": SHA}, "size", id="float"),
        pytest.param({"path": "a", "size": 1, "mtime": "x", "sha256": SHA}, "mtime", id="mtime"),
        pytest.param(
            {"path": "a", "size": 1, "mtime": float("nan"), "sha256": SHA}, "mtime", id="nan"
        ),
        pytest.param({"path": "a", "size": 1, "mtime": 1, "sha256": SHA.upper()}, "sha", id="hex"),
    ],
)
def test_entry_from_wire_refuses(item: Any, field: str) -> None:
    with pytest.raises(WireError, match=field):
        entry_from_wire(item)


def test_pull_request_refuses_repeated_paths() -> None:
    file = {"path": "a", "size": 1, "mtime": 1, "sha256": SHA}
    with pytest.raises(WireError, match="repeated"):
        pull_request_from_wire(
            {"source": "http://127.0.0.1:1", "files": [file, file]}, max_files=50
        )


def test_pull_report_refuses_unknown_state() -> None:
    doc = {"node": "n", "source": "s", "results": [{"path": "a", "state": "maybe", "bytes": 0}]}
    with pytest.raises(WireError, match="state"):
        pull_report_from_wire(doc)
    doc["results"][0]["state"] = "skipped"  # type: ignore[index]
    assert pull_report_from_wire(doc).results[0].state == PullState.SKIPPED


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://10.0.0.1:8470", True),
        ("https://agent.example", True),
        ("http://[::1]:8470/prefix", True),
        ("ftp://10.0.0.1", False),
        ("http://", False),
        ("http://user:pw@host", False),
        ("http://host?x=1", False),
        ("http://host:99999", False),
        ("not a url", False),
    ],
)
def test_is_agent_url(url: str, ok: bool) -> None:
    assert is_agent_url(url) is ok


def test_file_url_encodes_each_component() -> None:
    url = file_url("http://h:1/", "games/a b/c#d?.jsonl")
    assert str(url) == "http://h:1/v1/files/games/a%20b/c%23d%3F.jsonl"


# --- Kubernetes ----------------------------------------------------------------------------------

CA_PEM = "-----BEGIN CERTIFICATE-----\nnot-really\n-----END CERTIFICATE-----\n"


def test_load_kubeconfig_like_the_sandbox_writes_it(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(CA_PEM.encode()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": "admin-token"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "ctx",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    access = load_kubeconfig(tmp_path / "kubeconfig")
    assert access == KubeAccess(server="https://127.0.0.1:6443", token="admin-token", ca_pem=CA_PEM)


def test_load_kubeconfig_yaml_with_files_and_contexts(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text(CA_PEM)
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "kubeconfig").write_text(
        """
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: a
  cluster: {server: "https://a:6443", certificate-authority: ca.crt}
- name: b
  cluster: {server: "https://b:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {tokenFile: token}
contexts:
- name: one
  context: {cluster: a, user: u}
- name: two
  context: {cluster: b, user: u}
"""
    )
    one = load_kubeconfig(tmp_path / "kubeconfig")
    assert (one.server, one.token, one.ca_pem, one.insecure) == (
        "https://a:6443",
        "file-token",
        CA_PEM,
        False,
    )
    two = load_kubeconfig(tmp_path / "kubeconfig", context="two")
    assert (two.server, two.insecure) == ("https://b:6443", True)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2]", "not a kubeconfig"),
        ('{"current-context": "x", "contexts": []}', "no context named 'x'"),
        (
            '{"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}],'
            ' "clusters": [{"name": "c", "cluster": {}}]}',
            "no server",
        ),
        ("{unbalanced", "cannot read"),
    ],
)
def test_bad_kubeconfig_is_a_kube_error(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "kubeconfig").write_text(text)
    with pytest.raises(KubeError, match=match):
        load_kubeconfig(tmp_path / "kubeconfig")


def test_load_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text(CA_PEM)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = load_in_cluster(env=env, service_account_dir=tmp_path)
    assert access == KubeAccess(server="https://10.96.0.1:443", token="sa-token", ca_pem=CA_PEM)
    with pytest.raises(KubeError, match="not in a cluster"):
        load_in_cluster(env={}, service_account_dir=tmp_path)
    with pytest.raises(KubeError, match="service account"):
        load_in_cluster(env=env, service_account_dir=tmp_path / "missing")


class FakeApiServer:
    """Records PATCHes of Nodes; answers ``statuses`` in turn (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.patches: list[tuple[str, str, str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_patch("/api/v1/nodes/{name}", self.patch)
        return app

    async def patch(self, request: web.Request) -> web.Response:
        self.patches.append(
            (
                request.match_info["name"],
                request.headers.get("Content-Type", ""),
                request.headers.get("Authorization", ""),
                await request.json(),
            )
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"kind": "Node"}, status=status)


async def test_patch_node_annotations(start_app: Any, session: aiohttp.ClientSession) -> None:
    api = FakeApiServer()
    access = KubeAccess(server=await start_app(api.app()), token="admin-token")
    await patch_node_annotations(
        session=session, access=access, node="gpu-1", annotations={"a/b": "c"}
    )
    assert api.patches == [
        (
            "gpu-1",
            "application/merge-patch+json",
            "Bearer admin-token",
            {"metadata": {"annotations": {"a/b": "c"}}},
        )
    ]


async def test_patch_refused_is_a_kube_error(
    start_app: Any, session: aiohttp.ClientSession
) -> None:
    api = FakeApiServer(404)
    access = KubeAccess(server=await start_app(api.app()), token="t")
    with pytest.raises(KubeError, match="404"):
        await patch_node_annotations(session=session, access=access, node="n", annotations={})
    down = KubeAccess(server=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(KubeError):
        await patch_node_annotations(session=session, access=down, node="n", annotations={})


async def test_advertise_retries_until_the_annotation_sticks(
    start_app: Any, session: aiohttp.ClientSession
) -> None:
    api = FakeApiServer(500, 404)
    access = KubeAccess(server=await start_app(api.app()), token="t")
    await advertise(
        session=session,
        access=access,
        node="gpu-1",
        url="http://10.0.0.5:8470",
        first_retry_seconds=0.01,
    )
    assert len(api.patches) == 3
    assert api.patches[-1][3] == {
        "metadata": {"annotations": {ANNOTATION_AGENT_ENDPOINT: "http://10.0.0.5:8470"}}
    }


def test_manifest_json_matches_the_plain_encoding() -> None:
    from ringrift_operator.agent.client import entries_json, manifest_json, manifest_to_wire
    from ringrift_operator.managers.syncplanning import FileEntry, Manifest

    files = {f"g/{i}": FileEntry(f"g/{i}", i, 1.5 + i, SHA) for i in range(3)}
    manifest = Manifest(node='n"1', files=files, collected_at=1_700_000_000.123)
    spliced = manifest_json(
        node=manifest.node,
        collected_at=manifest.collected_at,
        files_json=entries_json(files.values()),
    )
    assert json.loads(spliced) == manifest_to_wire(manifest)
    assert manifest_from_wire(json.loads(spliced)) == manifest


@pytest.mark.parametrize(
    ("item", "field"),
    [
        pytest.param({"size": 1, "mtime": 1, "sha256": SHA}, "path", id="no-path"),
        pytest.param({"path": "a", "size": 1, "mtime": -1, "sha256": SHA}, "mtime", id="negative"),
        pytest.param({"path": "a", "size": "1", "mtime": 1, "sha256": SHA}, "size", id="str-size"),
        pytest.param("games/a", "expected an object", id="string"),
    ],
)
def test_manifest_from_wire_names_the_bad_entry(item: Any, field: str) -> None:
    good = {"path": "ok", "size": 1, "mtime": 1, "sha256": SHA}
    doc = {"node": "n", "collectedAt": 1.0, "files": [good, item]}
    with pytest.raises(WireError, match=rf"manifest\.files\[1\].*{field}|{field}.*files\[1\]"):
        manifest_from_wire(doc)
