"""Pulls: a target agent fetching files from a source agent, verified, resumable, atomic.

The server hands each ``POST /v1/pull`` to :meth:`Puller.pull`. Per file:

1. The destination is resolved inside the data directory (:func:`~ringrift_operator.agent.
   scanner.resolve_data_path`); a copy already holding the wanted sha256 is ``skipped``.
2. The file downloads to a hidden temp name in the destination's directory,
   ``.<name>.<sha256[:16]>.partial``. A temp file left by an earlier, interrupted attempt resumes
   with ``Range: bytes=<have>-`` and ``If-Range: "<sha256>"`` (the source answers 200 with the
   whole file if it no longer holds that version).
3. Arrival is checked: the source must declare the wanted sha256, send no more than the declared
   size, and the bytes must hash to the sha256. A short transfer keeps the temp file (the retry
   resumes); a corrupt one deletes it (the retry starts from scratch). One retry per file.
4. The temp file is fsynced, given the source's mtime (``os.utime``) and renamed into place, and
   its verified hash is handed to the scanner so that it is never read again.

Files of one pull are fetched a few at a time (``concurrency``), and two pulls of the same path
never run at once. Disk work runs in threads; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import aiohttp

from ringrift_operator.agent.client import (
    SHA256_HEADER,
    AgentAuthError,
    AgentClient,
    AgentError,
    AgentProtocolError,
    PullResult,
    PullState,
)
from ringrift_operator.agent.scanner import Scanner, UnsafePathError, resolve_data_path
from ringrift_operator.managers.syncplanning import FileEntry

if TYPE_CHECKING:
    from hashlib import _Hash

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
DEFAULT_CONCURRENCY = 4
DEFAULT_ATTEMPTS = 2  # the first try and one retry
DEFAULT_CHUNK_BYTES = 1 << 20
DEFAULT_READ_TIMEOUT_SECONDS = 60.0  # no byte for this long: the transfer is broken


def partial_path(dest: Path, sha256: str) -> Path:
    """The hidden name ``dest`` downloads under; the hash prefix ties it to one version."""
    return dest.with_name(f".{dest.name}.{sha256[:16]}{PARTIAL_SUFFIX}")


class _Corrupt(Exception):
    """The bytes are not the wanted version: discard the temp file."""


class _Incomplete(Exception):
    """The transfer stopped short: keep the temp file and resume."""


class _Permanent(Exception):
    """Retrying cannot help (the source lacks the file or holds another version)."""


@dataclass(frozen=True, slots=True)
class PullSettings:
    concurrency: int = DEFAULT_CONCURRENCY
    attempts: int = DEFAULT_ATTEMPTS
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS


class Puller:
    """Performs pulls into one data directory (see the module doc)."""

    def __init__(
        self,
        *,
        scanner: Scanner,
        session: aiohttp.ClientSession,
        token: str,
        settings: PullSettings | None = None,
    ) -> None:
        settings = settings or PullSettings()
        self._scanner = scanner
        self._data_dir = scanner.data_dir
        self._session = session
        self._token = token
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)  # files in flight, all pulls
        self._path_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # path -> (lock, users)

    async def pull(self, *, source_url: str, files: Sequence[FileEntry]) -> list[PullResult]:
        """Fetch ``files`` from the agent at ``source_url``; one result per file, in order."""
        client = AgentClient(base_url=source_url, token=self._token, session=self._session)
        return list(await asyncio.gather(*(self._pull_one(client, entry) for entry in files)))

    async def _pull_one(self, client: AgentClient, entry: FileEntry) -> PullResult:
        try:
            dest = resolve_data_path(self._data_dir, entry.path)
        except UnsafePathError as e:
            return PullResult(path=entry.path, state=PullState.FAILED, error=f"unsafe path: {e}")
        async with self._locked(entry.path), self._slots:
            try:
                if await asyncio.to_thread(self._is_current, entry, dest):
                    return PullResult(path=entry.path, state=PullState.SKIPPED)
            except OSError as e:
                return _failed(entry, 0, f"local: {e}")
            temp = partial_path(dest, entry.sha256)
            received = 0
            error = "not attempted"
            for _ in range(self._settings.attempts):
                transfer = _Transfer()
                try:
                    await self._download(client, entry, temp, transfer)
                    await asyncio.to_thread(self._install, entry, temp, dest)
                    return PullResult(
                        path=entry.path, state=PullState.DONE, bytes=received + transfer.received
                    )
                except _Corrupt as e:
                    error = f"corrupt: {e}"
                    await asyncio.to_thread(_unlink, temp)
                except _Incomplete as e:
                    error = f"truncated: {e}"
                except _Permanent as e:
                    return _failed(entry, received + transfer.received, str(e))
                except (AgentError, aiohttp.ClientError, TimeoutError) as e:
                    error = f"transfer: {_short(e)}"
                except OSError as e:
                    await asyncio.to_thread(_unlink, temp)
                    return _failed(entry, received + transfer.received, f"local: {e}")
                received += transfer.received
                log.info("pull %s from %s: %s", entry.path, client.base_url, error)
            return _failed(entry, received, error)

    async def _download(
        self, client: AgentClient, entry: FileEntry, temp: Path, transfer: _Transfer
    ) -> None:
        """Bring ``temp`` to the wanted content, resuming what it holds; raises on failure."""
        size = entry.size
        have, digest = await asyncio.to_thread(_prefix, temp, size)
        if have < size:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=self._settings.read_timeout_seconds
            )
            try:
                async with client.open_file(
                    entry.path, offset=have, if_range=entry.sha256, timeout=timeout
                ) as response:
                    served = response.headers.get(SHA256_HEADER)
                    if served and served != entry.sha256:
                        raise _Permanent(
                            f"source holds another version of {entry.path} (sha256 {served})"
                        )
                    if response.status == 200 or not _starts_at(response, have):
                        have, digest = 0, hashlib.sha256()
                    have = await self._receive(response, temp, have, digest, size, transfer)
            except AgentAuthError as e:
                raise _Permanent(f"source refused our token: {e}") from None
            except AgentProtocolError as e:
                if e.status == 416:  # our partial is longer than the source's file
                    raise _Corrupt("source refused to resume (416)") from None
                raise _Permanent(f"source refused: {e}") from None
        if have < size:
            raise _Incomplete(f"received {have} of {size} bytes")
        if digest.hexdigest() != entry.sha256:
            raise _Corrupt(f"sha256 {digest.hexdigest()} instead of {entry.sha256}")

    async def _receive(
        self,
        response: aiohttp.ClientResponse,
        temp: Path,
        have: int,
        digest: _Hash,
        size: int,
        transfer: _Transfer,
    ) -> int:
        """Append the body to ``temp`` from byte ``have``; returns the bytes it now holds."""
        handle = await asyncio.to_thread(_open_at, temp, have)
        try:
            buffer = bytearray()
            chunk_bytes = self._settings.chunk_bytes
            try:
                async for chunk in response.content.iter_chunked(chunk_bytes):
                    transfer.received += len(chunk)
                    if have + len(buffer) + len(chunk) > size:
                        raise _Corrupt(f"source sent more than the declared {size} bytes")
                    buffer += chunk
                    if len(buffer) >= chunk_bytes:
                        await asyncio.to_thread(_write, handle, digest, bytes(buffer))
                        have += len(buffer)
                        buffer.clear()
            finally:  # keep what arrived before a broken connection: the retry resumes from it
                if buffer and have + len(buffer) <= size:
                    await asyncio.to_thread(_write, handle, digest, bytes(buffer))
                    have += len(buffer)
        except aiohttp.ClientPayloadError as e:
            raise _Incomplete(f"connection broke after {have} of {size} bytes ({e})") from None
        finally:
            await asyncio.to_thread(handle.close)
        return have

    def _is_current(self, entry: FileEntry, dest: Path) -> bool:
        try:
            st = dest.stat()
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        return self._scanner.digest(entry.path, st) == entry.sha256

    def _install(self, entry: FileEntry, temp: Path, dest: Path) -> None:
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        mtime_ns = round(entry.mtime * 1_000_000_000)
        os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, dest)
        self._scanner.remember(entry.path, dest.stat(follow_symlinks=False), entry.sha256)

    @contextlib.asynccontextmanager
    async def _locked(self, path: str) -> AsyncIterator[None]:
        lock, users = self._path_locks.get(path) or (asyncio.Lock(), 0)
        self._path_locks[path] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._path_locks[path]
            if users == 1:
                del self._path_locks[path]
            else:
                self._path_locks[path] = (lock, users - 1)


@dataclass(slots=True)
class _Transfer:
    received: int = 0  # bytes that came over the network in this attempt


def _failed(entry: FileEntry, received: int, error: str) -> PullResult:
    return PullResult(path=entry.path, state=PullState.FAILED, bytes=received, error=error)


def _starts_at(response: aiohttp.ClientResponse, offset: int) -> bool:
    """Whether a 206 answer's ``Content-Range: bytes <offset>-...`` starts where we asked."""
    unit, _, rest = response.headers.get("Content-Range", "").partition(" ")
    start = rest.partition("-")[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


def _prefix(temp: Path, size: int) -> tuple[int, _Hash]:
    """How many bytes of a usable partial download exist, and their running hash.

    A partial longer than the wanted file cannot be a prefix of it: start over.
    """
    digest = hashlib.sha256()
    try:
        with temp.open("rb") as handle:
            length = os.fstat(handle.fileno()).st_size
            if length > size:
                length = 0
            else:
                remaining = length
                while remaining:
                    block = handle.read(min(remaining, DEFAULT_CHUNK_BYTES))
                    if not block:
                        break
                    digest.update(block)
                    remaining -= len(block)
                length -= remaining
    except FileNotFoundError:
        return 0, digest
    return length, digest


def _open_at(temp: Path, offset: int) -> BinaryIO:
    temp.parent.mkdir(parents=True, exist_ok=True)
    handle = temp.open("r+b" if offset and temp.exists() else "wb")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _write(handle: BinaryIO, digest: _Hash, data: bytes) -> None:
    handle.write(data)
    digest.update(data)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _short(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
