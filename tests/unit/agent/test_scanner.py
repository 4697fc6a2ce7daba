"""The scanner: hashing once, incremental rescans, the persisted cache, what is skipped, and the
path gate (check_relative_path, resolve_data_path)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ringrift_operator.agent.scanner import (
    CACHE_FILE,
    STATE_DIR,
    Scanner,
    UnsafePathError,
    check_config,
    check_relative_path,
    resolve_data_path,
    sha256_file,
)

Write = Callable[..., str]


class CountingHasher:
    """The real hash, counting calls per path."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: Path) -> str:
        self.calls.append(path.name)
        return sha256_file(path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


# --- hashing once --------------------------------------------------------------------------------


def test_scan_reports_path_size_mtime_and_sha256(data_dir: Path, write: Write) -> None:
    sha = write(data_dir, "games/square8_2p/a.jsonl", b"hello", mtime=1_700_000_000.5)
    manifest = Scanner(data_dir, node="n1", clock=lambda: 42.0).scan()
    assert manifest.node == "n1"
    assert manifest.collected_at == 42.0
    (entry,) = manifest.files.values()
    assert entry.path == "games/square8_2p/a.jsonl"
    assert entry.size == 5
    assert entry.mtime == pytest.approx(1_700_000_000.5)
    assert entry.sha256 == sha == hashlib.sha256(b"hello").hexdigest()


def test_rescan_of_unchanged_files_hashes_nothing(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    for i in range(5):
        write(data_dir, f"games/square8_2p/g{i}.jsonl", b"x" * i)
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    first = scanner.scan()
    assert len(hasher.calls) == 5
    second = scanner.scan()
    assert len(hasher.calls) == 5
    assert scanner.last_stats.hashed == 0
    assert second.files == first.files


def test_restarted_scanner_reuses_the_persisted_cache(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    write(data_dir, "games/hex8_2p/a.jsonl", b"a")
    Scanner(data_dir, node="n1").scan()
    assert (data_dir / STATE_DIR / CACHE_FILE).is_file()
    restarted = Scanner(data_dir, node="n1", hasher=hasher)
    assert len(restarted.scan().files) == 1
    assert hasher.calls == []


def test_corrupt_cache_file_is_ignored(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    write(data_dir, "games/hex8_2p/a.jsonl", b"a")
    (data_dir / STATE_DIR).mkdir()
    (data_dir / STATE_DIR / CACHE_FILE).write_text("{not json")
    manifest = Scanner(data_dir, node="n1", hasher=hasher).scan()
    assert list(manifest.files) == ["games/hex8_2p/a.jsonl"]
    assert hasher.calls == ["a.jsonl"]


def test_cache_with_a_wrong_hash_format_is_ignored(data_dir: Path, write: Write) -> None:
    sha = write(data_dir, "a.bin", b"a")
    (data_dir / STATE_DIR).mkdir()
    st = (data_dir / "a.bin").stat()
    bad = f'{{"version":1,"files":{{"a.bin":[1,{st.st_mtime_ns},{st.st_ino},"nothex"]}}}}'
    (data_dir / STATE_DIR / CACHE_FILE).write_text(bad)
    assert Scanner(data_dir, node="n1").scan().files["a.bin"].sha256 == sha


# --- rescans after changes -----------------------------------------------------------------------


def test_rescan_sees_modified_added_and_deleted_files(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    write(data_dir, "games/c/keep.jsonl", b"keep")
    write(data_dir, "games/c/change.jsonl", b"old", mtime=1_700_000_000)
    write(data_dir, "games/c/gone.jsonl", b"gone")
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    scanner.scan()
    hasher.calls.clear()

    new_sha = write(data_dir, "games/c/change.jsonl", b"new!", mtime=1_700_000_100)
    added_sha = write(data_dir, "games/c/added.jsonl", b"added")
    (data_dir / "games/c/gone.jsonl").unlink()
    manifest = scanner.scan()

    assert sorted(manifest.files) == [
        "games/c/added.jsonl",
        "games/c/change.jsonl",
        "games/c/keep.jsonl",
    ]
    assert manifest.files["games/c/change.jsonl"].sha256 == new_sha
    assert manifest.files["games/c/added.jsonl"].sha256 == added_sha
    assert sorted(hasher.calls) == ["added.jsonl", "change.jsonl"]


def test_same_size_and_mtime_rewrite_via_rename_is_rehashed(data_dir: Path, write: Write) -> None:
    write(data_dir, "f.bin", b"aaaa", mtime=1_700_000_000)
    scanner = Scanner(data_dir, node="n1")
    scanner.scan()
    # A new version renamed into place with the same size and mtime: only the inode differs.
    sha = write(data_dir, ".f.bin.tmp", b"bbbb", mtime=1_700_000_000)
    os.replace(data_dir / ".f.bin.tmp", data_dir / "f.bin")
    assert scanner.scan().files["f.bin"].sha256 == sha


def test_deleted_files_leave_the_persisted_cache(data_dir: Path, write: Write) -> None:
    write(data_dir, "a.bin", b"a")
    scanner = Scanner(data_dir, node="n1")
    scanner.scan()
    (data_dir / "a.bin").unlink()
    scanner.scan()
    assert '"a.bin"' not in (data_dir / STATE_DIR / CACHE_FILE).read_text()


def test_file_changing_while_hashed_is_left_out(data_dir: Path, write: Write) -> None:
    write(data_dir, "busy.bin", b"one")

    def meddling_hasher(path: Path) -> str:
        digest = sha256_file(path)
        path.write_bytes(b"one more")  # a writer appends while we read
        return digest

    scanner = Scanner(data_dir, node="n1", hasher=meddling_hasher)
    assert scanner.scan().files == {}
    assert Scanner(data_dir, node="n1", persist=False).scan().files["busy.bin"].size == 8


# --- what is listed ------------------------------------------------------------------------------


def test_hidden_temp_and_agent_files_are_skipped(data_dir: Path, write: Write) -> None:
    write(data_dir, "games/c/real.jsonl", b"r")
    write(data_dir, "games/c/.real.jsonl.123.tmp", b"t")
    write(data_dir, "games/c/.x.jsonl.abcdef.partial", b"p")
    write(data_dir, "games/c/visible.tmp", b"t")
    write(data_dir, ".hidden/inside.jsonl", b"h")
    Scanner(data_dir, node="n1").scan()  # writes .agent/hashes.json
    assert list(Scanner(data_dir, node="n1").scan().files) == ["games/c/real.jsonl"]


def test_symlinks_are_not_listed(data_dir: Path, tmp_path: Path, write: Write) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.txt", b"secret")
    write(data_dir, "games/c/real.jsonl", b"r")
    (data_dir / "games/c/link.jsonl").symlink_to(outside / "secret.txt")
    (data_dir / "games/linkdir").symlink_to(outside, target_is_directory=True)
    assert list(Scanner(data_dir, node="n1").scan().files) == ["games/c/real.jsonl"]


def test_config_filter_scans_only_that_config(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    write(data_dir, "games/square8_2p/a.jsonl", b"a")
    write(data_dir, "games/hex8_2p/b.jsonl", b"b")
    write(data_dir, "models/square8_2p/m.pt", b"m")
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    assert list(scanner.scan(configs=["square8_2p"]).files) == ["games/square8_2p/a.jsonl"]
    assert hasher.calls == ["a.jsonl"]
    both = scanner.scan(configs=["square8_2p", "hex8_2p"])
    assert sorted(both.files) == ["games/hex8_2p/b.jsonl", "games/square8_2p/a.jsonl"]
    assert len(scanner.scan().files) == 3


def test_config_scan_keeps_cache_of_other_configs(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    write(data_dir, "games/square8_2p/a.jsonl", b"a")
    write(data_dir, "games/hex8_2p/b.jsonl", b"b")
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    scanner.scan()
    scanner.scan(configs=["hex8_2p"])
    scanner.scan()
    assert len(hasher.calls) == 2


def test_missing_config_directory_gives_an_empty_manifest(data_dir: Path) -> None:
    assert Scanner(data_dir, node="n1").scan(configs=["square19_4p"]).files == {}


@pytest.mark.parametrize("config", ["../etc", "a/b", "", ".hidden", "x" * 80])
def test_bad_config_filter_is_refused(config: str) -> None:
    with pytest.raises(ValueError, match="not a config"):
        check_config(config)


def test_ten_thousand_files_rescan_only_stats(data_dir: Path, hasher: CountingHasher) -> None:
    directory = data_dir / "games/square8_2p"
    directory.mkdir(parents=True)
    for i in range(10_000):
        (directory / f"g{i:05d}.jsonl").write_bytes(b"%d" % i)
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    assert len(scanner.scan().files) == 10_000
    assert len(hasher.calls) == 10_000
    restarted = Scanner(data_dir, node="n1", hasher=hasher)
    assert len(restarted.scan().files) == 10_000
    assert restarted.last_stats.hashed == 0
    assert len(hasher.calls) == 10_000
    assert restarted.last_stats.seconds < 5.0  # typically ~0.05 s; generous for slow CI


def test_digest_uses_and_fills_the_cache(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    sha = write(data_dir, "a.bin", b"abc")
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    st = (data_dir / "a.bin").stat()
    assert scanner.digest("a.bin", st) == sha
    assert scanner.digest("a.bin", st) == sha
    assert scanner.scan().files["a.bin"].sha256 == sha
    assert hasher.calls == ["a.bin"]


def test_remembered_hash_is_not_recomputed(
    data_dir: Path, write: Write, hasher: CountingHasher
) -> None:
    sha = write(data_dir, "a.bin", b"abc")
    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    scanner.remember("a.bin", (data_dir / "a.bin").stat(), sha)
    assert scanner.scan().files["a.bin"].sha256 == sha
    assert hasher.calls == []


# --- the path gate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../etc/passwd", id="dotdot"),
        pytest.param("games/../../etc/passwd", id="inner-dotdot"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("games//a", id="empty-component"),
        pytest.param("games/./a", id="dot"),
        pytest.param("games/a\x00b", id="nul"),
        pytest.param("games/a\nb", id="newline"),
        pytest.param("games\\..\\x", id="backslash"),
        pytest.param(".agent/hashes.json", id="agent-state"),
        pytest.param("games/c/.g.jsonl.1.tmp", id="hidden-temp"),
        pytest.param("games/c/g.partial", id="partial"),
        pytest.param("a/" * 600, id="overlong"),
        pytest.param("games/" + "n" * 300, id="long-name"),
        pytest.param("", id="empty"),
    ],
)
def test_unsafe_relative_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relative_path(path)


@pytest.mark.parametrize(
    "path", ["games/square8_2p/a.jsonl", "models/m.pt", "a", "games/ü nicode/ok.jsonl"]
)
def test_safe_relative_paths_pass(path: str) -> None:
    assert check_relative_path(path) == path


def test_symlink_escaping_the_data_dir_is_refused(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "outside").mkdir()
    (data_dir / "games").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_data_path(data_dir.resolve(), "games/x.jsonl")


def test_symlink_inside_the_data_dir_is_allowed(data_dir: Path, write: Write) -> None:
    write(data_dir, "real/x.jsonl", b"x")
    (data_dir / "alias").symlink_to(data_dir / "real", target_is_directory=True)
    resolved = resolve_data_path(data_dir.resolve(), "alias/x.jsonl")
    assert resolved == (data_dir / "real/x.jsonl").resolve()


def test_generation_moves_exactly_when_the_entries_change(data_dir: Path, write: Write) -> None:
    write(data_dir, "games/c/a.jsonl", b"a")
    scanner = Scanner(data_dir, node="n1")
    _, first = scanner.scan_with_stats()
    _, again = scanner.scan_with_stats()
    assert again.generation == first.generation
    sha = write(data_dir, "games/c/b.jsonl", b"b")
    scanner.remember("games/c/b.jsonl", (data_dir / "games/c/b.jsonl").stat(), sha)
    manifest, after_remember = scanner.scan_with_stats()
    assert after_remember.generation > again.generation
    assert after_remember.hashed == 0
    assert sorted(manifest.files) == ["games/c/a.jsonl", "games/c/b.jsonl"]
    (data_dir / "games/c/a.jsonl").unlink()
    _, after_delete = scanner.scan_with_stats()
    assert after_delete.generation > after_remember.generation


def test_modified_file_changing_under_the_hasher_drops_its_old_entry(
    data_dir: Path, write: Write
) -> None:
    write(data_dir, "busy.bin", b"v1")
    calls: list[str] = []

    def hasher(path: Path) -> str:
        calls.append(path.name)
        digest = sha256_file(path)
        if len(calls) == 2:
            path.write_bytes(b"v2 still being written")
        return digest

    scanner = Scanner(data_dir, node="n1", hasher=hasher)
    assert "busy.bin" in scanner.scan().files
    (data_dir / "busy.bin").write_bytes(b"v2")
    assert scanner.scan().files == {}  # neither the old hash nor a half-read new one
    assert scanner.scan().files["busy.bin"].size == len(b"v2 still being written")


def test_stale_hidden_temp_files_are_removed(data_dir: Path, write: Write) -> None:
    write(data_dir, "games/c/.g.jsonl.123.tmp", b"left by a killed pod")
    write(data_dir, "games/c/.h.jsonl.0123456789abcdef.partial", b"never resumed")
    write(data_dir, "games/c/keep.tmp", b"not hidden: not ours to delete")
    write(data_dir, "games/c/real.jsonl", b"r")
    Scanner(data_dir, node="n1").scan()  # fresh: kept (a download may resume)
    assert len(list((data_dir / "games/c").iterdir())) == 4
    two_days_later = Scanner(data_dir, node="n1", clock=lambda: time.time() + 2 * 86_400)
    assert list(two_days_later.scan().files) == ["games/c/real.jsonl"]
    assert sorted(p.name for p in (data_dir / "games/c").iterdir()) == ["keep.tmp", "real.jsonl"]
    assert (data_dir / STATE_DIR / CACHE_FILE).is_file()  # the agent's own state is left alone
