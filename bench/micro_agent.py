"""Micro-benchmark of the node agent on loopback: one pull; manifest collection from many agents.

Run from the repository root: ``.venv/bin/python bench/micro_agent.py [--pull-files 50]
[--file-mib 2] [--agents 10] [--manifest-files 10000] [--dir DIR]``. Every agent is a real aiohttp
server in this process on 127.0.0.1 (so the figures include HTTP, JSON and hashing, but the
agents share one event loop and the GIL: separate processes on separate nodes do better).

Scenarios:

- ``pull``: a target agent pulls ``--pull-files`` files of ``--file-mib`` MiB from a source
  agent in one ``POST /v1/pull`` (download, sha256 check, fsync, rename); then the same pull
  again, which skips every file. Prints files/s and MB/s.
- ``manifests``: ``--agents`` agents of ``--manifest-files`` files each; the operator-side
  collection (``AgentClient.fetch_manifest`` to all agents at once) when every agent must hash
  everything (first scan), rescan (stat only), answer from its short cache, and after a restart
  (hashes from the ``.agent/hashes.json`` cache).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiohttp import web

from ringrift_operator.agent.client import AgentClient, PullState
from ringrift_operator.agent.scanner import Scanner
from ringrift_operator.agent.server import AgentSettings, build_app
from ringrift_operator.managers.syncplanning import FileEntry

TOKEN = "bench-token-0123456789abcdef"
T = TypeVar("T")


async def _serve(app: web.Application, runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _timed(call: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await call()
    return time.perf_counter() - start, result


async def bench_pull(root: Path, *, files: int, mib: int, session: aiohttp.ClientSession) -> None:
    source_dir, target_dir = root / "pull-source", root / "pull-target"
    entries = []
    for i in range(files):
        content = os.urandom(mib << 20)
        path = f"games/square8_2p/bench-{i:03d}.jsonl"
        (source_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (source_dir / path).write_bytes(content)
        entries.append(
            FileEntry(path, len(content), 1_700_000_000.0 + i, hashlib.sha256(content).hexdigest())
        )
    target_dir.mkdir(parents=True)
    runners: list[web.AppRunner] = []
    try:
        source = await _serve(
            build_app(scanner=Scanner(source_dir, node="source"), token=TOKEN), runners
        )
        target = await _serve(
            build_app(scanner=Scanner(target_dir, node="target"), token=TOKEN), runners
        )
        client = AgentClient(base_url=target, token=TOKEN, session=session)
        total_mb = files * (mib << 20) / 1e6
        for label in ("first pull", "same pull"):
            elapsed, report = await _timed(lambda: client.pull(source_url=source, files=entries))
            done, skipped = report.count(PullState.DONE), report.count(PullState.SKIPPED)
            assert report.ok, [r.error for r in report.results if r.error]
            print(
                f"  {label:<11} {files} x {mib} MiB  {elapsed:6.3f} s  "
                f"{files / elapsed:8.1f} files/s  {total_mb / elapsed:8.1f} MB/s  "
                f"(done {done}, skipped {skipped}, {report.bytes / 1e6:.0f} MB on the wire)"
            )
    finally:
        for runner in runners:
            await runner.cleanup()


def _make_files(directory: Path, count: int) -> None:
    games = directory / "games" / "square8_2p"
    games.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (games / f"{directory.name}-{i:06d}.jsonl").write_bytes(b'{"game": %d}\n' % i)


async def bench_manifests(
    root: Path, *, agents: int, files: int, session: aiohttp.ClientSession
) -> None:
    dirs = [root / f"node-{n}" for n in range(agents)]
    start = time.perf_counter()
    for directory in dirs:
        _make_files(directory, files)
    print(f"  (wrote {agents * files:,} files in {time.perf_counter() - start:.1f} s)")

    async def collect(
        settings: AgentSettings, label: str, rounds: int = 1, *, only: int | None = None
    ) -> None:
        runners: list[web.AppRunner] = []
        serving = dirs[:only]
        try:
            urls = [
                await _serve(
                    build_app(scanner=Scanner(d, node=d.name), token=TOKEN, settings=settings),
                    runners,
                )
                for d in serving
            ]
            clients = [AgentClient(base_url=u, token=TOKEN, session=session) for u in urls]
            for round_ in range(rounds):
                elapsed, manifests = await _timed(
                    lambda: asyncio.gather(*(c.fetch_manifest(timeout=600) for c in clients))
                )
                entries = sum(len(m.files) for m in manifests)
                name = label if rounds == 1 else f"{label} #{round_ + 1}"
                print(
                    f"  {name:<22} {len(serving):>2} agents  {entries:>9,} entries"
                    f"  {elapsed:6.3f} s  ({entries / elapsed:10,.0f} entries/s)"
                )
        finally:
            for runner in runners:
                await runner.cleanup()

    await collect(AgentSettings(manifest_cache_seconds=0), "first scan (hash all)")
    await collect(AgentSettings(manifest_cache_seconds=0), "after restart", rounds=1)
    await collect(AgentSettings(manifest_cache_seconds=0), "rescan (stat only)", rounds=3)
    await collect(AgentSettings(manifest_cache_seconds=3600), "agent cache", rounds=2)
    # What one node costs: on a cluster every agent scans on its own node, in parallel.
    await collect(AgentSettings(manifest_cache_seconds=0), "one agent rescan", rounds=3, only=1)


async def run(args: argparse.Namespace, root: Path) -> None:
    async with aiohttp.ClientSession() as session:
        print(f"pull: {args.pull_files} files of {args.file_mib} MiB, loopback")
        await bench_pull(root, files=args.pull_files, mib=args.file_mib, session=session)
        print(f"manifests: {args.agents} agents x {args.manifest_files:,} files")
        await bench_manifests(root, agents=args.agents, files=args.manifest_files, session=session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pull-files", type=int, default=50)
    parser.add_argument("--file-mib", type=int, default=2)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--manifest-files", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, Path(tempfile.mkdtemp(dir=args.dir))))
        return
    with tempfile.TemporaryDirectory(prefix="ringrift-bench-agent-") as scratch:
        asyncio.run(run(args, Path(scratch)))


if __name__ == "__main__":
    main()
