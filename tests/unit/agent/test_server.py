"""The agent's HTTP API: health, auth on every protected route, manifests, file serving with
ranges, path traversal, and request validation (malformed JSON, limits)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from ringrift_operator.agent.scanner import Scanner
from ringrift_operator.agent.server import AgentSettings, RangeNotSatisfiable, parse_range

Write = Callable[..., str]
CONTENT = bytes(range(256)) * 40  # 10240 bytes
PATH = "games/square8_2p/g1.jsonl"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(
    session: aiohttp.ClientSession, url: str | URL, token: str | None, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    all_headers = {**(auth(token) if token else {}), **headers}
    async with session.get(url, headers=all_headers) as r:
        return r.status, r.headers.copy(), await r.read()


# --- health and auth -----------------------------------------------------------------------------


async def test_healthz_needs_no_token(start_agent: Any, session: aiohttp.ClientSession) -> None:
    agent = await start_agent("n1")
    status, _, body = await get(session, agent.url + "/healthz", None)
    assert status == 200
    assert json.loads(body) == {"status": "ok", "node": "n1"}


PROTECTED = [
    pytest.param("GET", "/v1/manifest", id="manifest"),
    pytest.param("GET", "/v1/manifest?config=square8_2p", id="manifest-config"),
    pytest.param("GET", f"/v1/files/{PATH}", id="file"),
    pytest.param("POST", "/v1/pull", id="pull"),
    pytest.param("GET", "/v1/nothing-here", id="unknown-route"),
]


@pytest.mark.parametrize(("method", "route"), PROTECTED)
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer wrong-token-wrong-token-00", id="wrong-token"),
        pytest.param("Basic MDEyMzQ1Njc4OWFiY2RlZg==", id="other-scheme"),
        pytest.param("Bearer ", id="empty-bearer"),
    ],
)
async def test_protected_routes_refuse_without_the_token(
    start_agent: Any,
    session: aiohttp.ClientSession,
    write: Write,
    method: str,
    route: str,
    header: str | None,
) -> None:
    agent = await start_agent()
    write(agent.data_dir, PATH, CONTENT)
    headers = {"Authorization": header} if header is not None else {}
    async with session.request(method, agent.url + route, headers=headers, json={}) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in (await r.json())["error"]
        assert CONTENT[:64] not in await r.read()


# --- manifests -----------------------------------------------------------------------------------


async def test_manifest_lists_files_with_hashes(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent("n1")
    sha = write(agent.data_dir, PATH, CONTENT, mtime=1_700_000_000.25)
    status, headers, body = await get(session, agent.url + "/v1/manifest", token)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["node"] == "n1"
    assert isinstance(doc["collectedAt"], float)
    (entry,) = doc["files"]
    assert entry == {"path": PATH, "size": len(CONTENT), "mtime": entry["mtime"], "sha256": sha}
    assert entry["mtime"] == pytest.approx(1_700_000_000.25, abs=1e-6)


async def test_manifest_config_filter(start_agent: Any, write: Write) -> None:
    agent = await start_agent()
    write(agent.data_dir, "games/square8_2p/a.jsonl", b"a")
    write(agent.data_dir, "games/hex8_3p/b.jsonl", b"b")
    write(agent.data_dir, "models/square8_2p/m.pt", b"m")
    only = await agent.client.fetch_manifest(config="hex8_3p")
    assert list(only.files) == ["games/hex8_3p/b.jsonl"]
    two = await agent.client.fetch_manifest(config=["hex8_3p", "square8_2p"])
    assert sorted(two.files) == ["games/hex8_3p/b.jsonl", "games/square8_2p/a.jsonl"]
    assert len((await agent.client.fetch_manifest()).files) == 3


@pytest.mark.parametrize("config", ["../x", "a/b", ".agent", ""])
async def test_manifest_refuses_bad_config(
    start_agent: Any, session: aiohttp.ClientSession, token: str, config: str
) -> None:
    agent = await start_agent()
    url = URL(agent.url + "/v1/manifest").with_query(config=config)
    status, _, body = await get(session, url, token)
    assert status == 400
    assert "config" in json.loads(body)["error"]


async def test_manifest_is_cached_briefly_then_rescanned(start_agent: Any, write: Write) -> None:
    cached = await start_agent("cached", settings=AgentSettings(manifest_cache_seconds=3600))
    fresh = await start_agent("fresh", settings=AgentSettings(manifest_cache_seconds=0))
    for agent in (cached, fresh):
        await agent.client.fetch_manifest()
        write(agent.data_dir, "games/c/new.jsonl", b"new")
    assert (await cached.client.fetch_manifest()).files == {}
    assert list((await fresh.client.fetch_manifest()).files) == ["games/c/new.jsonl"]


async def test_big_manifest_is_compressed_when_accepted(
    start_agent: Any, session: aiohttp.ClientSession, token: str
) -> None:
    agent = await start_agent()
    directory = agent.data_dir / "games/square8_2p"
    directory.mkdir(parents=True)
    for i in range(1000):
        (directory / f"g{i:04d}.jsonl").write_bytes(b"%d" % i)
    async with session.get(
        agent.url + "/v1/manifest", headers={**auth(token), "Accept-Encoding": "gzip"}
    ) as r:
        assert r.headers.get("Content-Encoding") == "gzip"
        assert len((await r.json())["files"]) == 1000


# --- files and ranges ----------------------------------------------------------------------------


async def test_file_is_served_with_its_hash(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent()
    sha = write(agent.data_dir, PATH, CONTENT)
    status, headers, body = await get(session, f"{agent.url}/v1/files/{PATH}", token)
    assert status == 200
    assert body == CONTENT
    assert headers["ETag"] == f'"{sha}"'
    assert headers["X-Content-SHA256"] == sha
    assert headers["Accept-Ranges"] == "bytes"
    assert int(headers["Content-Length"]) == len(CONTENT)


async def test_empty_file_is_served(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent()
    sha = write(agent.data_dir, "games/c/empty.jsonl", b"")
    status, headers, body = await get(session, f"{agent.url}/v1/files/games/c/empty.jsonl", token)
    assert (status, body, headers["X-Content-SHA256"]) == (200, b"", sha)


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        pytest.param("bytes=100-199", 100, 200, id="closed"),
        pytest.param("bytes=10000-", 10000, 10240, id="open-ended"),
        pytest.param("bytes=-40", 10200, 10240, id="suffix"),
        pytest.param("bytes=10200-99999", 10200, 10240, id="end-clamped"),
        pytest.param("bytes=0-0", 0, 1, id="first-byte"),
    ],
)
async def test_range_request_gets_partial_content(
    start_agent: Any,
    session: aiohttp.ClientSession,
    write: Write,
    token: str,
    range_header: str,
    start: int,
    end: int,
) -> None:
    agent = await start_agent()
    write(agent.data_dir, PATH, CONTENT)
    status, headers, body = await get(
        session, f"{agent.url}/v1/files/{PATH}", token, Range=range_header
    )
    assert status == 206
    assert body == CONTENT[start:end]
    assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(CONTENT)}"


async def test_range_beyond_the_end_is_416(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent()
    write(agent.data_dir, PATH, CONTENT)
    status, headers, _ = await get(
        session, f"{agent.url}/v1/files/{PATH}", token, Range="bytes=20000-"
    )
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(CONTENT)}"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"Range": "bytes=0-1,5-6"}, id="multi-range"),
        pytest.param({"Range": "lines=1-2"}, id="other-unit"),
        pytest.param({"Range": "bytes=50-10"}, id="inverted"),
        pytest.param({"Range": "bytes=10-", "If-Range": '"' + "0" * 64 + '"'}, id="if-range-stale"),
    ],
)
async def test_ignored_range_serves_the_whole_file(
    start_agent: Any,
    session: aiohttp.ClientSession,
    write: Write,
    token: str,
    extra: dict[str, str],
) -> None:
    agent = await start_agent()
    write(agent.data_dir, PATH, CONTENT)
    status, _, body = await get(session, f"{agent.url}/v1/files/{PATH}", token, **extra)
    assert (status, body) == (200, CONTENT)


async def test_if_range_matching_resumes(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent()
    sha = write(agent.data_dir, PATH, CONTENT)
    status, _, body = await get(
        session,
        f"{agent.url}/v1/files/{PATH}",
        token,
        Range="bytes=5000-",
        **{"If-Range": f'"{sha}"'},
    )
    assert (status, body) == (206, CONTENT[5000:])


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=2-4", 10, (2, 5)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=0-100", 10, (0, 10)),
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
        ("bytes=1-2,4-5", 10, None),
        ("items=1-2", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size=size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=-5", 0)])
def test_parse_range_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size=size)


async def test_missing_file_and_directory_are_404(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str
) -> None:
    agent = await start_agent()
    write(agent.data_dir, PATH, CONTENT)
    for rel in ("games/square8_2p/none.jsonl", "games/square8_2p"):
        status, _, body = await get(session, f"{agent.url}/v1/files/{rel}", token)
        assert status == 404
        assert "error" in json.loads(body)


# --- path traversal ------------------------------------------------------------------------------


@pytest.fixture
async def traversal_agent(start_agent: Any, tmp_path: Path, write: Write) -> Any:
    """An agent whose data directory sits next to a secret, with symlinks pointing at it."""
    agent = await start_agent("victim")
    write(tmp_path, "secret/passwd", b"root:SECRET")
    write(agent.data_dir, PATH, CONTENT)
    (agent.data_dir / "games/evil.jsonl").symlink_to(tmp_path / "secret/passwd")
    (agent.data_dir / "evildir").symlink_to(tmp_path / "secret", target_is_directory=True)
    return agent


@pytest.mark.parametrize(
    "raw_path",
    [
        pytest.param("../secret/passwd", id="dotdot"),
        pytest.param("%2e%2e/secret/passwd", id="encoded-dots"),
        pytest.param("..%2fsecret%2fpasswd", id="encoded-slash"),
        pytest.param("%2e%2e%2f%2e%2e%2fsecret%2fpasswd", id="all-encoded"),
        pytest.param("games/..%2f..%2f..%2fsecret/passwd", id="inner-encoded"),
        pytest.param("%2fetc%2fpasswd", id="absolute-encoded"),
        pytest.param("/etc/passwd", id="absolute-double-slash"),
        pytest.param("games/evil.jsonl", id="symlink-file-outside"),
        pytest.param("evildir/passwd", id="symlink-dir-outside"),
        pytest.param("games/a%00b", id="nul"),
        pytest.param(".agent/hashes.json", id="agent-state"),
        pytest.param("games/" + "a" * 2000, id="overlong"),
    ],
)
async def test_path_traversal_is_refused(
    traversal_agent: Any, session: aiohttp.ClientSession, token: str, raw_path: str
) -> None:
    url = URL(f"{traversal_agent.url}/v1/files/{raw_path}", encoded=True)
    status, _, body = await get(session, url, token)
    assert status in (400, 404)
    assert b"SECRET" not in body
    assert b"root:" not in body


# --- request validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "malformed JSON", id="malformed"),
        pytest.param(b"\xff\xfe\x00", "malformed JSON", id="binary"),
        pytest.param(b"[]", "expected an object", id="list"),
        pytest.param(b'{"files": []}', "source", id="no-source"),
        pytest.param(b'{"source": "ftp://x", "files": []}', "source", id="bad-scheme"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": {}}', "files", id="files-object"),
        pytest.param(
            b'{"source": "http://127.0.0.1:1", "files": [{"path": "a", "size": -1,'
            b' "mtime": 1, "sha256": "' + b"0" * 64 + b'"}]}',
            "size",
            id="negative-size",
        ),
        pytest.param(
            b'{"source": "http://127.0.0.1:1", "files": [{"path": "a", "size": 1,'
            b' "mtime": 1, "sha256": "xyz"}]}',
            "sha256",
            id="bad-sha",
        ),
    ],
)
async def test_bad_pull_request_is_400(
    start_agent: Any, session: aiohttp.ClientSession, token: str, body: bytes, message: str
) -> None:
    agent = await start_agent()
    async with session.post(
        agent.url + "/v1/pull",
        data=body,
        headers={**auth(token), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
        assert message in (await r.json())["error"]


def _files(count: int) -> list[dict[str, Any]]:
    return [
        {"path": f"games/c/g{i}.jsonl", "size": 1, "mtime": 1.0, "sha256": "0" * 64}
        for i in range(count)
    ]


async def test_pull_of_more_than_max_files_is_refused(
    start_agent: Any, session: aiohttp.ClientSession, token: str
) -> None:
    agent = await start_agent()
    body = {"source": "http://127.0.0.1:1", "files": _files(51)}
    async with session.post(agent.url + "/v1/pull", json=body, headers=auth(token)) as r:
        assert r.status == 400
        assert "limit of 50" in (await r.json())["error"]


async def test_oversized_pull_request_is_413(
    start_agent: Any, session: aiohttp.ClientSession, token: str
) -> None:
    agent = await start_agent()
    body = json.dumps({"source": "http://127.0.0.1:1", "files": [], "pad": "x" * (2 << 20)})
    async with session.post(
        agent.url + "/v1/pull",
        data=body,
        headers={**auth(token), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 413
        assert "error" in await r.json()


@pytest.mark.parametrize("path", ["../escape.jsonl", "/abs.jsonl", "games/.hidden", "games/a\x00"])
async def test_pull_with_unsafe_destination_is_400(
    start_agent: Any, session: aiohttp.ClientSession, token: str, path: str
) -> None:
    agent = await start_agent()
    body = {
        "source": "http://127.0.0.1:1",
        "files": [{"path": path, "size": 1, "mtime": 1.0, "sha256": "0" * 64}],
    }
    async with session.post(agent.url + "/v1/pull", json=body, headers=auth(token)) as r:
        assert r.status == 400
        assert "refused path" in (await r.json())["error"]
    assert not (agent.data_dir.parent / "escape.jsonl").exists()


async def test_wrong_method_is_json_405(
    start_agent: Any, session: aiohttp.ClientSession, token: str
) -> None:
    agent = await start_agent()
    async with session.get(agent.url + "/v1/pull", headers=auth(token)) as r:
        assert r.status == 405
        assert "error" in await r.json()


async def test_file_hash_is_cached_between_requests(
    start_agent: Any, session: aiohttp.ClientSession, write: Write, token: str, tmp_path: Path
) -> None:
    calls: list[str] = []

    def hasher(path: Path) -> str:
        calls.append(path.name)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    write(tmp_path / "n1", PATH, CONTENT)
    agent = await start_agent("n1", scanner=Scanner(tmp_path / "n1", node="n1", hasher=hasher))
    await agent.client.fetch_manifest()
    for _ in range(3):
        status, _, body = await get(session, f"{agent.url}/v1/files/{PATH}", token)
        assert (status, body) == (200, CONTENT)
    assert calls == ["g1.jsonl"]
