"""Hostile input against a real agent (served on 127.0.0.1): generated paths for file reads and
pull destinations, bodies built to break the JSON parser, oversized requests and headers.

The properties: a caller's mistake is a 4xx with a JSON error (never a 5xx, never a traceback),
no byte from outside the data directory is served, and nothing is written outside it — the
directory tree around the agent's data directory is the same before and after.

(The hand-written cases — ``..``, encoded slashes, symlinks out, NUL, the agent's own state,
malformed and oversized pull requests — are in test_server.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from ringrift_operator.agent.scanner import UnsafePathError, check_relative_path

SECRET = b"root:SECRET-outside-the-data-dir"
GAME = "games/square8_2p/g1.jsonl"
SEGMENTS = st.one_of(
    st.sampled_from(["..", ".", "", "games", "square8_2p", "g1.jsonl", ".agent", "evil",
                     "evildir", "secret", "passwd", "%2e%2e", "%2f", "..%2f", "%00", "\\..",
                     "a" * 300, "~", "$HOME", "*", "?x=1", "#", ";", "%", "%zz"]),
    st.text(min_size=1, max_size=12),
)  # fmt: skip
PATHS = st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join) | st.text(max_size=40)
FUZZ = settings(
    max_examples=int(os.environ.get("RINGRIFT_AGENT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tree(root: Path, *, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` but ``skip``: path -> (size, mtime_ns)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in [*dirnames, *filenames]:
            st_ = (here / name).lstat()
            found[str((here / name).relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return found


@pytest.fixture
async def victim(start_agent: Any, tmp_path: Path, write: Any) -> Any:
    """An agent whose data directory sits next to a secret, with symlinks pointing at it, and a
    peer holding a real game (a pull source)."""
    agent = await start_agent("victim")
    write(tmp_path, "secret/passwd", SECRET)
    write(agent.data_dir, GAME, b"game\n")
    (agent.data_dir / "games/evil").symlink_to(tmp_path / "secret/passwd")
    (agent.data_dir / "evildir").symlink_to(tmp_path / "secret", target_is_directory=True)
    source = await start_agent("source")
    write(source.data_dir, "games/square8_2p/g2.jsonl", b"other game\n")
    return agent, source


def quote_some(path: str) -> str:
    """The path as sent on the wire: characters a URL cannot hold raw are %-encoded, the
    rest (``..``, ``%2f`` typed by the attacker) are sent as they are."""
    return "".join(c if 0x20 < ord(c) < 0x7F and c not in "#?" else _pct(c) for c in path)


def _pct(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


@FUZZ
@given(path=PATHS)
async def test_generated_file_paths_never_leave_the_data_dir(
    victim: Any, session: aiohttp.ClientSession, token: str, tmp_path: Path, path: str
) -> None:
    agent, _ = victim
    before = tree(tmp_path, skip=agent.data_dir)
    url = URL(f"{agent.url}/v1/files/{quote_some(path)}", encoded=True)
    async with session.get(url, headers=auth(token)) as r:
        body = await r.read()
        status = r.status
    assert status in (200, 400, 404, 405), (path, status, body[:200])
    assert SECRET not in body
    if status == 200:
        assert body == b"game\n", path
    else:
        assert "error" in json.loads(body) or status == 405
    assert tree(tmp_path, skip=agent.data_dir) == before


@FUZZ
@given(path=PATHS)
async def test_generated_pull_destinations_never_write_outside_the_data_dir(
    victim: Any, session: aiohttp.ClientSession, token: str, tmp_path: Path, path: str
) -> None:
    agent, source = victim
    before = tree(tmp_path, skip=agent.data_dir)
    body = {
        "source": source.url,
        "files": [{"path": path, "size": 11, "mtime": 1.0, "sha256": "0" * 64}],
    }
    async with session.post(agent.url + "/v1/pull", json=body, headers=auth(token)) as r:
        status, answer = r.status, await r.json()
    try:
        check_relative_path(path)
        safe = True
    except UnsafePathError:
        safe = False
    if not safe:
        assert status == 400, (path, answer)
        assert "path" in answer["error"]
    else:  # a legal name: the pull is attempted (and fails: no such file, or a wrong hash)
        assert status in (200, 400), (path, answer)
        if status == 200:
            assert all(r["state"] != "succeeded" for r in answer["results"]), answer
    assert tree(tmp_path, skip=agent.data_dir) == before
    assert (tmp_path / "secret/passwd").read_bytes() == SECRET


# --- bodies and headers built to break parsers -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-lists"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="nested-objects"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [' + b"[" * 50_000 + b"]" * 50_000
                     + b"]}", id="nested-in-files"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [{"path": "games/a.jsonl",'
                     b' "size": 1, "mtime": 1e999999, "sha256": "' + b"0" * 64 + b'"}]}',
                     id="mtime-infinity"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [{"path": "games/a.jsonl",'
                     b' "size": 1e400, "mtime": 1, "sha256": "' + b"0" * 64 + b'"}]}',
                     id="size-infinity"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [{"path": "games/a.jsonl",'
                     b' "size": NaN, "mtime": NaN, "sha256": "' + b"0" * 64 + b'"}]}',
                     id="nan"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [{"path": "games/a.jsonl",'
                     b' "size": 99999999999999999999999999, "mtime": 1, "sha256": "'
                     + b"0" * 64 + b'"}]}', id="size-beyond-int64"),
        pytest.param(b'{"source": "http://127.0.0.1:1", "files": [], "source": 1}',
                     id="duplicate-key"),
        pytest.param(b'{"source": "\xff\xfe", "files": []}', id="invalid-utf8"),
    ],
)  # fmt: skip
async def test_parser_breaking_pull_bodies_are_4xx(
    start_agent: Any, session: aiohttp.ClientSession, token: str, body: bytes
) -> None:
    agent = await start_agent()
    async with session.post(
        agent.url + "/v1/pull",
        data=body,
        headers={**auth(token), "Content-Type": "application/json"},
    ) as r:
        assert 400 <= r.status < 500, (r.status, await r.text())
        assert "error" in await r.json()


async def test_huge_header_is_refused(
    start_agent: Any, session: aiohttp.ClientSession, token: str
) -> None:
    agent = await start_agent()
    headers = {"Authorization": f"Bearer {token}", "X-Pad": "x" * 100_000}
    async with session.get(agent.url + "/v1/manifest", headers=headers) as r:
        assert 400 <= r.status < 500


async def test_a_hostile_agents_nested_manifest_is_a_protocol_error(
    start_app: Any, session: aiohttp.ClientSession, token: str
) -> None:
    """The other direction: an agent answering the operator with JSON nested past the parser's
    stack is an agent error the operator handles, not a RecursionError in a reconcile."""
    from aiohttp import web

    from ringrift_operator.agent.client import AgentClient, AgentProtocolError

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/manifest", manifest)
    url = await start_app(app)
    client = AgentClient(base_url=url, token=token, session=session)
    with pytest.raises(AgentProtocolError, match="nested too deeply"):
        await client.fetch_manifest()
