"""Corrupt history databases are moved aside and replaced by a fresh store, never a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import MetricSample, StateEntry

NOW = 1_764_000_000.0
LOGGER = "test.history"


async def fill(path: Path, rows: int = 5000) -> None:
    """A healthy database with enough pages that damage lands inside data."""
    async with HistoryStore.open(path) as store:
        await store.record_many(
            MetricSample("m", float(i), at=float(i), labels={"i": str(i)}) for i in range(rows)
        )


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\x00" * 500)


def truncated(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def damaged_page(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 4096)


def damaged_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"SQLite format 2\x00")


async def open_quietly(path: Path) -> HistoryStore:
    return await HistoryStore.open(path, clock=lambda: NOW, logger=logging.getLogger(LOGGER))


@pytest.mark.parametrize(
    ("damage", "healthy_first"),
    [
        pytest.param(garbage, False, id="garbage-bytes"),
        pytest.param(truncated, True, id="truncated"),
        pytest.param(damaged_page, True, id="damaged-page"),
        pytest.param(damaged_header, True, id="damaged-header"),
    ],
)
async def test_corrupt_file_is_moved_aside(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    healthy_first: bool,
) -> None:
    path = tmp_path / "history.db"
    if healthy_first:
        await fill(path)
    damage(path)
    broken = path.read_bytes()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = await open_quietly(path)

    moved = tmp_path / f"history.db.corrupt-{int(NOW)}"
    assert store.recovered_from == moved
    assert moved.read_bytes() == broken
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(moved) in message
    assert "\n" not in message
    # A fresh, working, empty store in its place.
    assert (await store.integrity_check()).ok
    assert await store.list_metrics(name="m", since=0.0) == []
    await store.save_state(key="k", value="v", now=NOW)
    assert await store.load_state(key="k") == StateEntry("k", "v", NOW)
    await store.close()


async def test_side_files_move_with_the_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    garbage(path)
    (tmp_path / "history.db-wal").write_bytes(b"old wal")
    (tmp_path / "history.db-shm").write_bytes(b"old shm")
    store = await open_quietly(path)
    await store.close()
    stem = f"history.db.corrupt-{int(NOW)}"
    assert (tmp_path / f"{stem}-wal").read_bytes() == b"old wal"
    assert (tmp_path / f"{stem}-shm").exists()  # an index SQLite rewrites: only its place matters


async def test_two_recoveries_in_the_same_second_keep_both(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    for content in (b"first" * 200, b"second" * 200):
        path.write_bytes(content)
        store = await open_quietly(path)
        await store.close()
    stem = f"history.db.corrupt-{int(NOW)}"
    assert (tmp_path / stem).read_bytes() == b"first" * 200
    assert (tmp_path / f"{stem}.1").read_bytes() == b"second" * 200


async def test_healthy_database_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.db"
    await fill(path, rows=10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = await open_quietly(path)
    assert store.recovered_from is None
    assert caplog.records == []
    assert len(await store.list_metrics(name="m", since=0.0)) == 10
    await store.close()


async def test_empty_file_is_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.touch()
    store = await open_quietly(path)
    assert store.recovered_from is None
    assert await store.load_schema_version() == 3
    await store.close()


async def test_missing_directory_is_created(tmp_path: Path) -> None:
    async with HistoryStore.open(tmp_path / "a" / "b" / "history.db") as store:
        assert store.path.parent.is_dir()


@pytest.mark.parametrize("quick", [False, True], ids=["integrity_check", "quick_check"])
async def test_integrity_check_of_a_healthy_store(tmp_path: Path, quick: bool) -> None:
    path = tmp_path / "history.db"
    await fill(path, rows=100)
    async with HistoryStore.open(path) as store:
        report = await store.integrity_check(quick=quick)
    assert report.ok
    assert report.messages == ("ok",)
