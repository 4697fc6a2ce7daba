"""The node's data directory as the agent sees it: safe paths, an incremental scan, cached hashes.

:class:`Scanner` walks the data directory and returns a :class:`~ringrift_operator.managers.
syncplanning.Manifest` (path, size, mtime, sha256 of every file). A file's sha256 is computed once
and cached under the key (size, mtime_ns, inode) of its path; the cache is saved to
``<data-dir>/.agent/hashes.json`` so that a restarted agent does not hash everything again. A
rescan of an unchanged directory therefore costs one ``stat`` per file. The inode is part of the
key because writers rename new versions into place (a new inode): a file rewritten in place with
its old size and mtime restored would otherwise keep a stale hash.

Skipped: names starting with ``.`` (temporary files such as ``.<name>.<pid>.tmp``, the agent's own
``.agent/`` directory and its ``.partial`` downloads), names ending in ``.tmp`` or ``.partial``,
symlinks, and names that are not valid UTF-8 or too long to be requested back. Hidden temporary
files older than a day are garbage (a writer killed mid-file, a download never resumed; the
workload contract allows deleting them): scans delete them.

:func:`resolve_data_path` is the single gate between a path from the network and the disk: the
file server and the puller call it before touching anything.

Blocking code: the server runs :meth:`Scanner.scan` and :meth:`Scanner.digest` in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringrift_operator.managers.syncplanning import FileEntry, Manifest, config_prefix

log = logging.getLogger(__name__)

STATE_DIR = ".agent"  # the agent's own files inside the data directory (hidden: never served)
CACHE_FILE = "hashes.json"
CACHE_VERSION = 1
TEMP_SUFFIXES = (".tmp", ".partial")
MAX_PATH_LENGTH = 1024  # bytes of a relative path, UTF-8
MAX_NAME_LENGTH = 255  # bytes of one path component
DEFAULT_STALE_TEMP_SECONDS = 86_400.0
_CONFIG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Hasher = Callable[[Path], str]
"""Returns the hex sha256 of a file's content; injected so that tests can count calls."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in large blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --- paths ---------------------------------------------------------------------------------------


class UnsafePathError(ValueError):
    """A requested path that could reach outside the data directory or into hidden files."""


def check_relative_path(path: str) -> str:
    """Validate a ``/``-separated path relative to the data directory; returns it unchanged.

    Refused: empty, absolute, NUL or other control characters, backslashes, empty, ``.`` or
    ``..`` components, hidden components (``.name``), temporary names, overlong paths.
    """
    if not path:
        raise UnsafePathError("empty path")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
        raise UnsafePathError(f"path longer than {MAX_PATH_LENGTH} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise UnsafePathError("control character (NUL, newline...) in path")
    if "\\" in path:
        raise UnsafePathError("backslash in path")
    if path.startswith("/"):
        raise UnsafePathError("absolute path")
    for part in path.split("/"):
        if part in {"", ".", ".."}:
            raise UnsafePathError(f"path component {part!r} not allowed")
        if part.startswith("."):
            raise UnsafePathError("hidden path component")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_LENGTH:
            raise UnsafePathError(f"path component longer than {MAX_NAME_LENGTH} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError("path is not valid UTF-8") from None
    if path.endswith(TEMP_SUFFIXES):
        raise UnsafePathError("temporary file name")
    return path


def resolve_data_path(data_dir: Path, path: str) -> Path:
    """The absolute path of ``path`` inside ``data_dir`` (itself resolved), symlinks followed.

    Raises :class:`UnsafePathError` for a path :func:`check_relative_path` refuses or one that
    resolves outside ``data_dir`` (a symlink escaping it). The file need not exist.
    """
    check_relative_path(path)
    resolved = (data_dir / path).resolve()
    if not resolved.is_relative_to(data_dir) or resolved == data_dir:
        raise UnsafePathError("path resolves outside the data directory")
    return resolved


def check_config(config: str) -> str:
    """Validate a board config key used as a manifest filter (``square8_2p``)."""
    if not _CONFIG_RE.fullmatch(config) or ".." in config:
        raise ValueError(f"not a config name: {config!r}")
    return config


def is_listed_name(name: str) -> bool:
    """Whether a directory entry's name takes part in manifests."""
    return not name.startswith(".") and not name.endswith(TEMP_SUFFIXES)


# --- the scan ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanStats:
    """What one scan did, for logs, tests and the benchmark."""

    files: int
    hashed: int  # files whose content was read (new or changed since the cache)
    hashed_bytes: int
    seconds: float
    generation: int = 0  # see Scanner.generation: equal generations, equal manifests


@dataclass(frozen=True, slots=True)
class _Cached:
    size: int
    mtime_ns: int
    inode: int
    entry: FileEntry  # kept whole so that an unchanged file costs no new object per scan


_Found = tuple[str, os.stat_result]


class Scanner:
    """Incremental, thread-safe scans of one node's data directory (see the module doc)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        node: str,
        hasher: Hasher = sha256_file,
        clock: Callable[[], float] = time.time,
        persist: bool = True,
        stale_temp_seconds: float | None = DEFAULT_STALE_TEMP_SECONDS,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._stale_temp_seconds = stale_temp_seconds
        self.node = node
        self._hasher = hasher
        self._clock = clock
        self._persist = persist
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()  # guards _cache and _dirty
        self._save_lock = threading.Lock()
        self._dirty = False
        self._generation = 0  # bumped by every change of the cache; guarded by _lock
        self.last_stats = ScanStats(files=0, hashed=0, hashed_bytes=0, seconds=0.0)
        if persist:
            self._load_cache()

    @property
    def cache_path(self) -> Path:
        return self.data_dir / STATE_DIR / CACHE_FILE

    @property
    def generation(self) -> int:
        """A counter bumped by every change of the hash cache (a file hashed, remembered or gone).

        After a scan the cache holds exactly the listed files of the scanned scope, so two scans
        of one scope ending at the same generation return the same entries: the server reuses
        the JSON of the files when it did not move (``ScanStats.generation``).
        """
        with self._lock:
            return self._generation

    def scan(self, *, configs: Collection[str] | None = None) -> Manifest:
        """The manifest of the whole data directory, or of ``games/<config>/`` for ``configs``."""
        return self.scan_with_stats(configs=configs)[0]

    def scan_with_stats(
        self, *, configs: Collection[str] | None = None
    ) -> tuple[Manifest, ScanStats]:
        """:meth:`scan`, with what it did. Files that change while being hashed are left out
        (they are being written); the next scan picks them up."""
        started = time.perf_counter()
        roots = self._roots(configs)
        temps: list[os.DirEntry[str]] = []
        found = [
            item
            for root, prefix in roots
            if root.resolve().is_relative_to(self.data_dir)  # not a symlinked config dir
            for item in self._walk(root, prefix, temps)
        ]
        self._remove_stale(temps)
        with self._lock:
            get = self._cache.get
            stale = [
                (rel, st)
                for rel, st in found
                if (c := get(rel)) is None
                or c.size != st.st_size
                or c.mtime_ns != st.st_mtime_ns
                or c.inode != st.st_ino
            ]
        hashed: dict[str, _Cached] = {}
        hashed_bytes = 0
        for rel, st in stale:
            cached = self._hash(rel, st)
            if cached is not None:
                hashed[rel] = cached
                hashed_bytes += st.st_size
        with self._lock:
            self._cache.update(hashed)
            seen = {rel for rel, _ in found}
            prefixes = tuple(prefix for _, prefix in roots)
            gone = [p for p in self._cache if p.startswith(prefixes) and p not in seen]
            # A file that changed under the hasher: its old entry would describe bytes that are
            # no longer there.
            gone.extend(rel for rel, _ in stale if rel not in hashed and rel in self._cache)
            for path in gone:
                del self._cache[path]
            if hashed or gone:
                self._dirty = True
                self._generation += 1
            generation = self._generation
            cache = self._cache
            entries = {rel: c.entry for rel, _ in found if (c := cache.get(rel)) is not None}
        self.save_cache()
        manifest = Manifest(node=self.node, files=entries, collected_at=self._clock())
        stats = ScanStats(
            files=len(entries),
            hashed=len(stale),
            hashed_bytes=hashed_bytes,
            seconds=time.perf_counter() - started,
            generation=generation,
        )
        self.last_stats = stats
        return manifest, stats

    def digest(self, path: str, st: os.stat_result) -> str | None:
        """The sha256 of the file at relative ``path`` whose current stat is ``st``.

        From the cache when it matches, else hashed (and cached). ``None`` when the file changed
        while being hashed: the caller should not trust ``st`` any more.
        """
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and _same(cached, st):
            return cached.entry.sha256
        fresh = self._hash(path, st)
        if fresh is None:
            return None
        with self._lock:
            self._cache[path] = fresh
            self._dirty = True
            self._generation += 1
        return fresh.entry.sha256

    def remember(self, path: str, st: os.stat_result, sha256: str) -> None:
        """Record a hash verified elsewhere (a pulled file), so that no scan reads it again."""
        entry = FileEntry(path=path, size=st.st_size, mtime=st.st_mtime_ns / 1e9, sha256=sha256)
        with self._lock:
            self._cache[path] = _Cached(st.st_size, st.st_mtime_ns, st.st_ino, entry)
            self._dirty = True
            self._generation += 1

    # --- persistence -------------------------------------------------------------------------

    def save_cache(self) -> None:
        """Write the hash cache if it changed (atomically: a temp file renamed into place)."""
        if not self._persist:
            return
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                rows = {
                    p: [c.size, c.mtime_ns, c.inode, c.entry.sha256] for p, c in self._cache.items()
                }
                self._dirty = False
            target = self.cache_path
            temp = target.with_name(f".{target.name}.tmp")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                temp.write_text(
                    json.dumps({"version": CACHE_VERSION, "files": rows}, separators=(",", ":"))
                )
                os.replace(temp, target)
            except OSError as e:  # a read-only or full disk costs rehashing later, nothing else
                log.warning("cannot save the hash cache %s: %s", target, e)
                with self._lock:
                    self._dirty = True
                with contextlib.suppress(OSError):
                    temp.unlink()

    def _load_cache(self) -> None:
        try:
            raw = json.loads(self.cache_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring the unreadable hash cache %s: %s", self.cache_path, e)
            return
        loaded = _parse_cache(raw)
        if loaded is None:
            log.warning("ignoring the hash cache %s: unknown format", self.cache_path)
            return
        self._cache = loaded

    # --- internals ---------------------------------------------------------------------------

    def _roots(self, configs: Collection[str] | None) -> list[tuple[Path, str]]:
        if configs is None:
            return [(self.data_dir, "")]
        return [
            (self.data_dir / config_prefix(check_config(c)), config_prefix(c))
            for c in sorted(set(configs))
        ]

    def _walk(self, root: Path, prefix: str, temps: list[os.DirEntry[str]]) -> Iterator[_Found]:
        """Regular files under ``root`` (symlinks not followed) with their stat, relative paths
        starting with ``prefix``; hidden temporary files are added to ``temps``."""
        stack = [(os.fspath(root), prefix)]
        while stack:
            directory, rel_dir = stack.pop()
            try:
                iterator = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                log.warning("cannot list %s: %s", directory, e)
                continue
            with iterator:
                for item in iterator:
                    name = item.name
                    if not is_listed_name(name) or item.is_symlink():
                        if name.startswith(".") and name.endswith(TEMP_SUFFIXES):
                            temps.append(item)
                        continue
                    rel = rel_dir + name
                    if item.is_dir(follow_symlinks=False):
                        stack.append((item.path, rel + "/"))
                        continue
                    if not item.is_file(follow_symlinks=False) or not _listable(rel):
                        continue
                    try:
                        yield rel, item.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed since listed
                        continue

    def _remove_stale(self, temps: list[os.DirEntry[str]]) -> None:
        if self._stale_temp_seconds is None or not temps:
            return
        cutoff = self._clock() - self._stale_temp_seconds
        for item in temps:
            try:
                st = item.stat(follow_symlinks=False)
                # ctime too: a finished download gets the source's (old) mtime just before
                # its rename, which also moves its ctime to now.
                if stat.S_ISREG(st.st_mode) and max(st.st_mtime, st.st_ctime) < cutoff:
                    os.unlink(item.path)
                    log.info("removed the stale temporary file %s", item.path)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("cannot remove the stale temporary file %s: %s", item.path, e)

    def _hash(self, rel: str, st: os.stat_result) -> _Cached | None:
        """Hash one file; None when it vanished or changed while being read."""
        path = self.data_dir / rel
        try:
            sha = self._hasher(path)
            after = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot hash %s: %s", path, e)
            return None
        if (after.st_size, after.st_mtime_ns, after.st_ino) != (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
        ):
            return None
        entry = FileEntry(path=rel, size=st.st_size, mtime=st.st_mtime_ns / 1e9, sha256=sha)
        return _Cached(st.st_size, st.st_mtime_ns, st.st_ino, entry)


def _same(cached: _Cached, st: os.stat_result) -> bool:
    return (cached.size, cached.mtime_ns, cached.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)


def _listable(rel: str) -> bool:
    """Whether a path can be requested back (see :func:`check_relative_path`)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in a name (surrogate escapes)
        return False
    return len(rel.encode()) <= MAX_PATH_LENGTH and rel.isprintable()


_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _parse_cache(raw: Any) -> dict[str, _Cached] | None:
    if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION:
        return None
    files = raw.get("files")
    if not isinstance(files, dict):
        return None
    cache: dict[str, _Cached] = {}
    for path, row in files.items():
        if not (
            isinstance(row, list)
            and len(row) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in row[:3])
            and isinstance(row[3], str)
            and _SHA_RE.fullmatch(row[3])
        ):
            continue
        size, mtime_ns, inode, sha = row
        entry = FileEntry(path=path, size=size, mtime=mtime_ns / 1e9, sha256=sha)
        cache[path] = _Cached(size, mtime_ns, inode, entry)
    return cache
