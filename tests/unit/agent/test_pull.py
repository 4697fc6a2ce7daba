"""Pulls between agents: byte-identical copies with the source's mtime, skips, resume from a
partial download, and the failures: tampered bytes, truncated transfers, missing or different
files, unreachable or unfriendly sources."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ringrift_operator.agent.client import (
    AgentProtocolError,
    PullReport,
    PullState,
)
from ringrift_operator.agent.pull import partial_path
from ringrift_operator.agent.scanner import Scanner, sha256_file
from ringrift_operator.agent.server import AgentSettings
from ringrift_operator.managers.syncplanning import FileEntry

Write = Callable[..., str]
CONTENT = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a multiple of the chunk size
SHA = hashlib.sha256(CONTENT).hexdigest()
PATH = "games/square8_2p/big.jsonl"
MTIME = 1_700_000_123.5


def entry(path: str = PATH, content: bytes = CONTENT, mtime: float = MTIME) -> FileEntry:
    return FileEntry(path, len(content), mtime, hashlib.sha256(content).hexdigest())


@pytest.fixture
async def pair(start_agent: Any, write: Write) -> tuple[Any, Any]:
    """A source holding PATH and an empty target."""
    source = await start_agent("source")
    write(source.data_dir, PATH, CONTENT, mtime=MTIME)
    target = await start_agent("target")
    return source, target


# --- the happy path ------------------------------------------------------------------------------


async def test_pull_copies_files_byte_identical_with_mtime(
    pair: tuple[Any, Any], write: Write
) -> None:
    source, target = pair
    small = write(source.data_dir, "games/hex8_2p/small.jsonl", b"small", mtime=1_600_000_000.0)
    files = [entry(), FileEntry("games/hex8_2p/small.jsonl", 5, 1_600_000_000.0, small)]

    report = await target.client.pull(source_url=source.url, files=files)

    assert isinstance(report, PullReport)
    assert report.node == "target"
    assert [(r.path, r.state, r.error) for r in report.results] == [
        (PATH, PullState.DONE, None),
        ("games/hex8_2p/small.jsonl", PullState.DONE, None),
    ]
    assert report.bytes == len(CONTENT) + 5
    assert (target.data_dir / PATH).read_bytes() == CONTENT
    assert (target.data_dir / PATH).stat().st_mtime == pytest.approx(MTIME, abs=1e-6)
    copied = (target.data_dir / "games/hex8_2p/small.jsonl").stat().st_mtime
    assert copied == pytest.approx(1_600_000_000.0, abs=1e-6)
    assert not list((target.data_dir / "games/square8_2p").glob(".*"))  # no temp files left


async def test_pulled_files_appear_in_the_manifest_unhashed(
    start_agent: Any, write: Write, tmp_path: Path
) -> None:
    source = await start_agent("source")
    write(source.data_dir, PATH, CONTENT, mtime=MTIME)
    calls: list[str] = []

    def hasher(path: Path) -> str:
        calls.append(path.name)
        return sha256_file(path)

    (tmp_path / "target").mkdir()
    target = await start_agent(
        "target",
        scanner=Scanner(tmp_path / "target", node="target", hasher=hasher),
        settings=AgentSettings(manifest_cache_seconds=3600),
    )
    assert (await target.client.fetch_manifest()).files == {}
    await target.client.pull(source_url=source.url, files=[entry()])
    manifest = await target.client.fetch_manifest()
    assert manifest.files[PATH].sha256 == SHA
    assert manifest.files[PATH].mtime == pytest.approx(MTIME, abs=1e-6)
    assert calls == []  # the verified hash was handed to the scanner


async def test_second_pull_is_skipped(pair: tuple[Any, Any]) -> None:
    source, target = pair
    await target.client.pull(source_url=source.url, files=[entry()])
    again = await target.client.pull(source_url=source.url, files=[entry()])
    assert [(r.state, r.bytes) for r in again.results] == [(PullState.SKIPPED, 0)]


async def test_pull_replaces_an_older_version(pair: tuple[Any, Any], write: Write) -> None:
    source, target = pair
    write(target.data_dir, PATH, b"older version", mtime=MTIME - 3600)
    report = await target.client.pull(source_url=source.url, files=[entry()])
    assert report.results[0].state == PullState.DONE
    assert sha256_file(target.data_dir / PATH) == SHA


async def test_concurrent_pulls_of_one_file_download_it_once(pair: tuple[Any, Any]) -> None:
    source, target = pair
    first, second = await asyncio.gather(
        target.client.pull(source_url=source.url, files=[entry()]),
        target.client.pull(source_url=source.url, files=[entry()]),
    )
    states = sorted([first.results[0].state, second.results[0].state])
    assert states == [PullState.DONE, PullState.SKIPPED]
    assert sha256_file(target.data_dir / PATH) == SHA


async def test_pull_report_wire_shape(
    pair: tuple[Any, Any], session: aiohttp.ClientSession, token: str
) -> None:
    source, target = pair
    body = {
        "source": source.url,
        "files": [{"path": PATH, "size": len(CONTENT), "mtime": MTIME, "sha256": SHA}],
    }
    async with session.post(
        target.url + "/v1/pull", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
        doc = await r.json()
    assert doc == {
        "node": "target",
        "source": source.url,
        "done": 1,
        "failed": 0,
        "skipped": 0,
        "bytes": len(CONTENT),
        "results": [{"path": PATH, "state": "done", "bytes": len(CONTENT), "error": None}],
    }


async def test_pull_of_too_many_files_raises_protocol_error(pair: tuple[Any, Any]) -> None:
    source, target = pair
    files = [entry(path=f"games/c/g{i}.jsonl") for i in range(51)]
    with pytest.raises(AgentProtocolError, match="limit of 50") as caught:
        await target.client.pull(source_url=source.url, files=files)
    assert caught.value.status == 400


async def test_max_files_per_job_is_configurable(start_agent: Any) -> None:
    source = await start_agent("source")
    target = await start_agent("target", settings=AgentSettings(max_files_per_job=2))
    files = [entry(path=f"games/c/g{i}.jsonl") for i in range(3)]
    with pytest.raises(AgentProtocolError, match="limit of 2"):
        await target.client.pull(source_url=source.url, files=files)


# --- resume --------------------------------------------------------------------------------------


async def test_pull_resumes_from_a_partial_temp_file(pair: tuple[Any, Any]) -> None:
    source, target = pair
    dest = target.data_dir / PATH
    dest.parent.mkdir(parents=True)
    have = 2 * 1024 * 1024 + 5
    partial_path(dest, SHA).write_bytes(CONTENT[:have])

    report = await target.client.pull(source_url=source.url, files=[entry()])

    assert report.results[0].state == PullState.DONE
    assert report.results[0].bytes == len(CONTENT) - have  # only the rest came over the wire
    assert dest.read_bytes() == CONTENT
    assert not partial_path(dest, SHA).exists()


async def test_complete_partial_is_installed_without_a_request(pair: tuple[Any, Any]) -> None:
    _, target = pair
    dest = target.data_dir / PATH
    dest.parent.mkdir(parents=True)
    partial_path(dest, SHA).write_bytes(CONTENT)
    report = await target.client.pull(source_url="http://127.0.0.1:9", files=[entry()])
    assert (report.results[0].state, report.results[0].bytes) == (PullState.DONE, 0)
    assert dest.read_bytes() == CONTENT


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(b"\x00" * 1000, id="wrong-prefix"),
        pytest.param(CONTENT + b"extra", id="longer-than-file"),
    ],
)
async def test_bad_partial_is_discarded_and_the_file_fetched_whole(
    pair: tuple[Any, Any], junk: bytes
) -> None:
    source, target = pair
    dest = target.data_dir / PATH
    dest.parent.mkdir(parents=True)
    partial_path(dest, SHA).write_bytes(junk)
    report = await target.client.pull(source_url=source.url, files=[entry()])
    assert report.results[0].state == PullState.DONE
    assert dest.read_bytes() == CONTENT


# --- misbehaving sources -------------------------------------------------------------------------


@dataclass
class FakeSource:
    """A source agent that misbehaves on purpose: ``serve(request_number, offset)`` returns
    ``(bytes to send, bytes to announce)``; sending fewer than announced breaks the connection."""

    serve: Callable[[int, int], tuple[bytes, int]]
    declared_sha: str = SHA
    requests: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/files/{path:.+}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ranged = request.headers.get("Range")
        self.requests.append(ranged)
        offset = int(ranged.removeprefix("bytes=").rstrip("-")) if ranged else 0
        body, announced = self.serve(len(self.requests), offset)
        response = web.StreamResponse(
            status=206 if offset else 200, headers={"X-Content-SHA256": self.declared_sha}
        )
        if offset:
            response.headers["Content-Range"] = f"bytes {offset}-{offset + announced - 1}/*"
        response.content_length = announced
        await response.prepare(request)
        await response.write(body)
        if len(body) < announced:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


async def test_tampered_source_is_detected_and_nothing_is_left(
    start_agent: Any, start_app: Any
) -> None:
    tampered = bytearray(CONTENT)
    tampered[12345] ^= 0xFF
    fake = FakeSource(lambda n, offset: (bytes(tampered[offset:]), len(CONTENT) - offset))
    source_url = await start_app(fake.app())
    target = await start_agent("target")

    report = await target.client.pull(source_url=source_url, files=[entry()])

    (result,) = report.results
    assert result.state == PullState.FAILED
    assert result.error is not None
    assert result.error.startswith("corrupt: sha256")
    assert fake.requests == [None, None]  # retried once, from scratch
    assert result.bytes == 2 * len(CONTENT)
    assert not (target.data_dir / PATH).exists()
    assert not partial_path(target.data_dir / PATH, SHA).exists()


async def test_source_sending_too_much_is_corrupt(start_agent: Any, start_app: Any) -> None:
    fake = FakeSource(lambda n, offset: (CONTENT + b"!!", len(CONTENT) + 2))
    target = await start_agent("target")
    report = await target.client.pull(source_url=await start_app(fake.app()), files=[entry()])
    assert report.results[0].state == PullState.FAILED
    assert "more than the declared" in (report.results[0].error or "")
    assert not (target.data_dir / PATH).exists()


def resumed_from(header: str | None) -> int:
    assert header is not None
    assert header.startswith("bytes=")
    assert header.endswith("-")
    return int(header[len("bytes=") : -1])


async def test_truncated_transfer_is_detected_and_kept_for_resume(
    start_agent: Any, start_app: Any
) -> None:
    half = len(CONTENT) // 2
    fake = FakeSource(lambda n, offset: (CONTENT[offset:half], len(CONTENT) - offset))
    target = await start_agent("target")

    report = await target.client.pull(source_url=await start_app(fake.app()), files=[entry()])

    (result,) = report.results
    assert result.state == PullState.FAILED
    assert result.error is not None
    assert result.error.startswith(("truncated", "transfer"))
    # The retry resumed from what had arrived (bytes still in flight at the break are lost).
    assert fake.requests[0] is None
    assert 0 < resumed_from(fake.requests[1]) <= half
    assert len(fake.requests) == 2
    assert not (target.data_dir / PATH).exists()
    kept = partial_path(target.data_dir / PATH, SHA).read_bytes()
    assert 0 < len(kept) <= half
    assert kept == CONTENT[: len(kept)]


async def test_broken_transfer_resumes_on_retry(start_agent: Any, start_app: Any) -> None:
    cut = 1_000_000

    def serve(n: int, offset: int) -> tuple[bytes, int]:
        if n == 1:  # the connection breaks after `cut` bytes
            return CONTENT[:cut], len(CONTENT)
        return CONTENT[offset:], len(CONTENT) - offset

    fake = FakeSource(serve)
    target = await start_agent("target")

    report = await target.client.pull(source_url=await start_app(fake.app()), files=[entry()])

    assert report.results[0].state == PullState.DONE
    assert len(fake.requests) == 2
    assert 0 < resumed_from(fake.requests[1]) <= cut
    assert report.results[0].bytes == len(CONTENT)  # nothing that arrived was fetched again
    assert (target.data_dir / PATH).read_bytes() == CONTENT
    assert (target.data_dir / PATH).stat().st_mtime == pytest.approx(MTIME, abs=1e-6)


async def test_resume_answered_from_the_wrong_offset_restarts(
    start_agent: Any, start_app: Any
) -> None:
    # The source claims to resume but sends the whole file: more than the declared size.
    fake = FakeSource(lambda n, offset: (CONTENT, len(CONTENT)))
    target = await start_agent("target")
    dest = target.data_dir / PATH
    dest.parent.mkdir(parents=True)
    partial_path(dest, SHA).write_bytes(CONTENT[:1000])

    report = await target.client.pull(source_url=await start_app(fake.app()), files=[entry()])

    assert report.results[0].state == PullState.DONE
    assert fake.requests == ["bytes=1000-", None]  # discarded, then fetched from scratch
    assert dest.read_bytes() == CONTENT


async def test_source_without_the_file_fails_without_retry(pair: tuple[Any, Any]) -> None:
    source, target = pair
    report = await target.client.pull(
        source_url=source.url, files=[entry(path="games/c/none.jsonl")]
    )
    (result,) = report.results
    assert result.state == PullState.FAILED
    assert "404" in (result.error or "")


async def test_source_with_another_version_fails(pair: tuple[Any, Any]) -> None:
    source, target = pair
    report = await target.client.pull(source_url=source.url, files=[entry(content=b"wanted")])
    assert report.results[0].state == PullState.FAILED
    assert "another version" in (report.results[0].error or "")
    assert not (target.data_dir / PATH).exists()


async def test_unreachable_source_fails_every_file(start_agent: Any) -> None:
    target = await start_agent("target")
    files = [entry(), entry(path="games/c/other.jsonl")]
    report = await target.client.pull(source_url="http://127.0.0.1:9", files=files)
    assert [r.state for r in report.results] == [PullState.FAILED, PullState.FAILED]
    assert all((r.error or "").startswith("transfer") for r in report.results)
    assert not report.ok


async def test_source_refusing_our_token_fails(
    start_agent: Any, start_app: Any, tmp_path: Path, write: Write
) -> None:
    from ringrift_operator.agent.server import build_app

    write(tmp_path / "other", PATH, CONTENT)
    other = build_app(scanner=Scanner(tmp_path / "other", node="other"), token="another-token-123")
    target = await start_agent("target")
    report = await target.client.pull(source_url=await start_app(other), files=[entry()])
    assert report.results[0].state == PullState.FAILED
    assert "token" in (report.results[0].error or "")
