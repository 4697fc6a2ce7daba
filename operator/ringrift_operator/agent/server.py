"""``ringrift-operator agent``: the node agent's HTTP server, the data plane of SyncPlan.

One agent per node (a DaemonSet; one local process per simulated node in the sandbox) serves the
node's data directory to the operator and to its peers:

- ``GET /healthz`` (no token): ``{"status": "ok", "node": ...}``.
- ``GET /v1/manifest[?config=C ...]``: every file (or the games of the configs) with size, mtime
  and sha256; an incremental rescan (:mod:`~ringrift_operator.agent.scanner`), shared by requests
  within ``--manifest-cache-seconds``.
- ``GET /v1/files/<path>``: the file's bytes, with ``ETag``/``X-Content-SHA256`` (its sha256) and
  single-range ``Range`` support (206), so that a broken download resumes.
- ``POST /v1/pull``: fetch up to ``--max-files-per-job`` files from another agent
  (:mod:`~ringrift_operator.agent.pull`), answering one result per file.

Every route but ``/healthz`` needs ``Authorization: Bearer <token>``. Errors are JSON
``{"error": "..."}`` with a 4xx status for the caller's mistakes; never a traceback. With
Kubernetes credentials (``--kubeconfig``, or in a pod), the agent writes its URL to its Node's
``ringrift.ai/agent-endpoint`` annotation, where the operator finds it. SIGTERM stops it
gracefully (in-flight requests get ``--shutdown-seconds`` to finish).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

import aiohttp
from aiohttp import web

from ringrift_operator.agent.auth import TokenError, is_authorized, load_token
from ringrift_operator.agent.client import (
    FILES_PATH,
    HEALTHZ_PATH,
    MANIFEST_PATH,
    PULL_PATH,
    SHA256_HEADER,
    KubeAccess,
    KubeError,
    PullReport,
    WireError,
    entries_json,
    load_in_cluster,
    load_kubeconfig,
    manifest_json,
    patch_node_annotations,
    pull_report_to_wire,
    pull_request_from_wire,
)
from ringrift_operator.agent.pull import Puller, PullSettings
from ringrift_operator.agent.scanner import (
    Scanner,
    UnsafePathError,
    check_config,
    resolve_data_path,
)
from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT
from ringrift_operator.api.contract import HOST_DATA_DIR, Env
from ringrift_operator.managers.syncplanning import DEFAULT_MAX_FILES_PER_JOB

log = logging.getLogger(__name__)

PROG = "ringrift-operator agent"
DEFAULT_PORT = 8470
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MANIFEST_CACHE_SECONDS = 2.0
DEFAULT_SHUTDOWN_SECONDS = 10.0
FILE_CHUNK_BYTES = 1 << 20
ADVERTISE_RETRY_MAX_SECONDS = 30.0
READVERTISE_SECONDS = 300.0
MAX_CACHED_SCOPES = 32  # distinct ?config= combinations whose manifests are kept
NODE_ENV = "NODE_NAME"  # set from the downward API in the DaemonSet
POD_IP_ENV = "POD_IP"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The server's knobs (the CLI flags)."""

    max_files_per_job: int = DEFAULT_MAX_FILES_PER_JOB
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    manifest_cache_seconds: float = DEFAULT_MANIFEST_CACHE_SECONDS
    pull: PullSettings = field(default_factory=PullSettings)


# --- the application -----------------------------------------------------------------------------


class _Agent:
    """What the handlers share: the scanner, the puller and the manifest cache."""

    def __init__(self, *, scanner: Scanner, token: str, settings: AgentSettings) -> None:
        self.scanner = scanner
        self.token = token
        self.settings = settings
        self.puller: Puller | None = None  # needs the client session: made on startup
        self._manifests: dict[tuple[str, ...] | None, tuple[float, bytes]] = {}
        # scope -> (scanner generation, encoded files): unchanged files are not encoded again
        self._files_json: dict[tuple[str, ...] | None, tuple[int, bytes]] = {}
        self._scan_lock = asyncio.Lock()

    async def manifest_body(self, configs: tuple[str, ...] | None) -> bytes:
        """The manifest JSON, rescanned unless a scan of the same scope is fresh enough."""
        async with self._scan_lock:  # concurrent requests share one scan
            loop = asyncio.get_running_loop()
            cached = self._manifests.get(configs)
            if cached and loop.time() - cached[0] < self.settings.manifest_cache_seconds:
                return cached[1]
            body = await asyncio.to_thread(self._scan_json, configs)
            if len(self._manifests) >= MAX_CACHED_SCOPES:  # callers choose the scopes: bound them
                self._manifests.clear()
                self._files_json = {configs: self._files_json[configs]}
            self._manifests[configs] = (loop.time(), body)
            return body

    def invalidate_manifests(self) -> None:
        self._manifests.clear()

    def _scan_json(self, configs: tuple[str, ...] | None) -> bytes:
        """Rescan and encode (in a thread, under the scan lock)."""
        manifest, stats = self.scanner.scan_with_stats(configs=configs)
        cached = self._files_json.get(configs)
        if cached is not None and cached[0] == stats.generation:
            files = cached[1]
        else:
            files = entries_json(manifest.files.values())
            self._files_json[configs] = (stats.generation, files)
        return manifest_json(
            node=manifest.node, collected_at=manifest.collected_at, files_json=files
        )


AGENT = web.AppKey("agent", _Agent)


def build_app(
    *,
    scanner: Scanner,
    token: str,
    settings: AgentSettings | None = None,
    session: aiohttp.ClientSession | None = None,
) -> web.Application:
    """The agent's aiohttp application. ``session`` (for pulls) is made on startup if None."""
    settings = settings or AgentSettings()
    agent = _Agent(scanner=scanner, token=token, settings=settings)
    app = web.Application(
        client_max_size=settings.max_request_bytes, middlewares=[_errors, _authenticate]
    )
    app[AGENT] = agent
    app.router.add_get(HEALTHZ_PATH, _healthz)
    app.router.add_get(MANIFEST_PATH, _manifest)
    app.router.add_get(FILES_PATH + "{path:.+}", _file)
    app.router.add_post(PULL_PATH, _pull)

    async def pulls(app: web.Application) -> AsyncIterator[None]:
        own = session is None
        client = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )
        agent.puller = Puller(scanner=scanner, session=client, token=token, settings=settings.pull)
        yield
        if own:
            await client.close()
        await asyncio.to_thread(scanner.save_cache)

    app.cleanup_ctx.append(pulls)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": message}),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON; an unexpected exception is logged and becomes a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        return json_error(e.status, e.text or e.reason, **_kept_headers(e.headers))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error (see the agent's log)")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != HEALTHZ_PATH and not is_authorized(
        request.headers.get("Authorization"), token=request.app[AGENT].token
    ):
        return json_error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
    return await handler(request)


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in {"Allow", "Content-Range", "Retry-After"}}


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    return web.json_response({"status": "ok", "node": agent.scanner.node})


async def _manifest(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    configs = request.query.getall("config", [])
    try:
        scope = tuple(sorted({check_config(c) for c in configs})) if configs else None
    except ValueError as e:
        return json_error(400, str(e))
    body = await agent.manifest_body(scope)
    response = web.Response(body=body, content_type="application/json")
    if len(body) > 64 << 10:
        response.enable_compression()  # manifests of big nodes cross the network every minute
    return response


async def _file(request: web.Request) -> web.StreamResponse:
    agent = request.app[AGENT]
    rel = request.match_info["path"]
    try:
        path = resolve_data_path(agent.scanner.data_dir, rel)
    except UnsafePathError as e:
        return json_error(400, f"refused path: {e}")
    try:
        handle = await asyncio.to_thread(_open_regular, path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, _NotRegular):
        return json_error(404, f"no such file: {rel}")
    except OSError as e:  # ELOOP: the last component became a symlink; EACCES
        return json_error(404, f"cannot open {rel}: {e.strerror}")
    try:
        st = os.fstat(handle.fileno())
        sha = await asyncio.to_thread(agent.scanner.digest, rel, st)
        if sha is None:
            return json_error(503, f"{rel} is changing; retry", **{"Retry-After": "1"})
        return await _send_file(request, handle, st=st, sha=sha)
    finally:
        await asyncio.to_thread(handle.close)


class _NotRegular(OSError):
    pass


def _open_regular(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise _NotRegular(path)
    return handle


class RangeNotSatisfiable(ValueError):
    """A syntactically valid range that starts beyond the end of the file."""


def parse_range(header: str | None, *, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` byte span of a single-range ``Range`` header, or None for the whole
    file (no header, another unit, several ranges or a malformed spec are ignored, as RFC 9110
    allows). Raises :class:`RangeNotSatisfiable` for a range beyond the end."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if not first:  # suffix: the last N bytes
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, end


async def _send_file(
    request: web.Request, handle: BinaryIO, *, st: os.stat_result, sha: str
) -> web.StreamResponse:
    size = st.st_size
    etag = f'"{sha}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        SHA256_HEADER: sha,
        "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
        "Content-Type": "application/octet-stream",
    }
    span: tuple[int, int] | None = None
    if_range = request.headers.get("If-Range")
    if if_range is None or if_range.strip() == etag:
        try:
            span = parse_range(request.headers.get("Range"), size=size)
        except RangeNotSatisfiable:
            return json_error(416, "range not satisfiable", **{"Content-Range": f"bytes */{size}"})
    start, end = span or (0, size)
    response = web.StreamResponse(status=206 if span else 200, headers=headers)
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await asyncio.to_thread(handle.seek, start)
    remaining = end - start
    while remaining:
        chunk = await asyncio.to_thread(handle.read, min(FILE_CHUNK_BYTES, remaining))
        if not chunk:  # the file shrank under us: break the connection, the client sees it
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write(chunk)
        remaining -= len(chunk)
    await response.write_eof()
    return response


async def _pull(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    raw = await request.read()  # over client_max_size: 413 (see _errors)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return json_error(400, f"malformed JSON: {e}")
    except RecursionError:  # [[[[... deeper than the parser's stack: a caller's mistake too
        return json_error(400, "malformed JSON: nested too deeply")
    try:
        pull = pull_request_from_wire(body, max_files=agent.settings.max_files_per_job)
    except WireError as e:
        return json_error(400, str(e))
    try:
        for entry in pull.files:
            resolve_data_path(agent.scanner.data_dir, entry.path)
    except UnsafePathError as e:
        return json_error(400, f"refused path {entry.path!r}: {e}")
    assert agent.puller is not None  # made on startup
    results = await agent.puller.pull(source_url=pull.source, files=pull.files)
    agent.invalidate_manifests()
    report = PullReport(node=agent.scanner.node, source=pull.source, results=tuple(results))
    return web.json_response(pull_report_to_wire(report))


# --- running it ----------------------------------------------------------------------------------


async def advertise(
    *,
    session: aiohttp.ClientSession,
    access: KubeAccess,
    node: str,
    url: str,
    first_retry_seconds: float = 1.0,
) -> None:
    """Write ``url`` to the Node's endpoint annotation, retrying with backoff until it sticks
    (the Node may not exist yet, the API server may be restarting)."""
    delay = first_retry_seconds
    while True:
        try:
            await patch_node_annotations(
                session=session,
                access=access,
                node=node,
                annotations={ANNOTATION_AGENT_ENDPOINT: url},
            )
        except KubeError as e:
            log.warning(
                "advertising %s on node %s failed (retry in %.0fs): %s", url, node, delay, e
            )
            await asyncio.sleep(delay)
            delay = min(ADVERTISE_RETRY_MAX_SECONDS, delay * 2)
        else:
            log.info("advertised %s on node %s", url, node)
            return


async def keep_advertised(
    *,
    session: aiohttp.ClientSession,
    access: KubeAccess,
    node: str,
    url: str,
    interval: float = READVERTISE_SECONDS,
) -> None:
    """:func:`advertise`, then again every ``interval`` seconds: a Node object that was deleted
    and registered again (or an annotation someone removed) gets the endpoint back."""
    while True:
        await advertise(session=session, access=access, node=node, url=url)
        await asyncio.sleep(interval)


async def serve(
    *,
    app: web.Application,
    host: str,
    port: int,
    node: str,
    advertise_url: str | None = None,
    kube: KubeAccess | None = None,
    stop: asyncio.Event,
    shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
    access_log: bool = False,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set, advertising the endpoint on the Node
    when ``kube`` is given. ``on_listening`` receives the URL (``port`` 0 picks a free port)."""
    runner = web.AppRunner(
        app,
        shutdown_timeout=shutdown_seconds,
        access_log=logging.getLogger("ringrift_operator.agent.access") if access_log else None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = advertise_url or default_advertise_url(host, bound, env=os.environ)
        log.info("agent of node %s serving %s on %s:%d as %s", node, _dir(app), host, bound, url)
        if on_listening is not None:
            on_listening(url)
        async with contextlib.AsyncExitStack() as stack:
            if kube is not None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
                task = asyncio.create_task(
                    keep_advertised(session=session, access=kube, node=node, url=url)
                )
                stack.push_async_callback(_cancel, task)
            await stop.wait()
            log.info("stopping")
    finally:
        await runner.cleanup()


def default_advertise_url(host: str, port: int, *, env: Mapping[str, str]) -> str:
    """``http://<host>:<port>``; for a wildcard host, the pod IP or else this host's name."""
    if host in {"", "0.0.0.0", "::"}:
        host = env.get(POD_IP_ENV) or socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, or ``:PORT`` for every address) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen expects HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _dir(app: web.Application) -> Path:
    return app[AGENT].scanner.data_dir


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The node agent: manifest, files and pulls.")
    parser.add_argument(
        "--node",
        default=os.environ.get(NODE_ENV),
        help=f"this node's name (default ${NODE_ENV})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(Env.DATA_DIR) or HOST_DATA_DIR),
        help=f"the node's data directory (default ${Env.DATA_DIR} or {HOST_DATA_DIR})",
    )
    parser.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"address to serve on (default 0.0.0.0:{DEFAULT_PORT}; port 0 picks one)",
    )
    parser.add_argument(
        "--advertise",
        metavar="URL",
        help="the URL peers and the operator use (default http://<listen host or $POD_IP>:port)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token (default: $RINGRIFT_AGENT_TOKEN)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig for advertising the endpoint on the Node (default: in-cluster if in "
        "a pod, else no advertising)",
    )
    parser.add_argument(
        "--no-advertise", action="store_true", help="never write the Node annotation"
    )
    parser.add_argument(
        "--max-files-per-job",
        type=_positive_int,
        default=DEFAULT_MAX_FILES_PER_JOB,
        help=f"files one pull may ask for (default {DEFAULT_MAX_FILES_PER_JOB})",
    )
    parser.add_argument(
        "--manifest-cache-seconds",
        type=float,
        default=DEFAULT_MANIFEST_CACHE_SECONDS,
        help=f"reuse a manifest this long (default {DEFAULT_MANIFEST_CACHE_SECONDS:g})",
    )
    parser.add_argument(
        "--pull-concurrency",
        type=_positive_int,
        default=PullSettings().concurrency,
        help=f"files downloaded at once (default {PullSettings().concurrency})",
    )
    parser.add_argument(
        "--shutdown-seconds",
        type=float,
        default=DEFAULT_SHUTDOWN_SECONDS,
        help=f"grace for in-flight requests on SIGTERM (default {DEFAULT_SHUTDOWN_SECONDS:g})",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _kube_access(args: argparse.Namespace, env: Mapping[str, str]) -> KubeAccess | None:
    if args.no_advertise:
        return None
    if args.kubeconfig is not None:
        return load_kubeconfig(args.kubeconfig)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return load_in_cluster(env=env)
    log.info("no kubeconfig and not in a cluster: the endpoint is not advertised")
    return None


def main(argv: list[str]) -> int:
    """Run the agent until SIGTERM/SIGINT. Exit codes: 0 stopped, 2 bad usage or settings."""
    try:
        args = build_parser().parse_args(argv)
        if not args.node:
            raise _UsageError(f"--node is required (or set ${NODE_ENV})")
        host, port = parse_listen(args.listen)
        token = load_token(token_file=args.token_file, env=os.environ)
        logging.basicConfig(
            level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        kube = _kube_access(args, os.environ)
        args.data_dir.mkdir(parents=True, exist_ok=True)
    except (_UsageError, ValueError, TokenError, KubeError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    settings = AgentSettings(
        max_files_per_job=args.max_files_per_job,
        manifest_cache_seconds=args.manifest_cache_seconds,
        pull=PullSettings(concurrency=args.pull_concurrency),
    )
    scanner = Scanner(args.data_dir, node=args.node)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            app=build_app(scanner=scanner, token=token, settings=settings),
            host=host,
            port=port,
            node=args.node,
            advertise_url=args.advertise,
            kube=kube,
            stop=stop,
            shutdown_seconds=args.shutdown_seconds,
            access_log=args.log_level == "DEBUG",
        )

    try:
        asyncio.run(run())
    except OSError as e:  # the port is taken, the address does not exist
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0
