"""The versioned schema: from empty, from every older version, failing steps, newer databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from ringrift_operator.state.history import HistoryStore, SchemaTooNewError
from ringrift_operator.state.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    MigrationResult,
    apply_migrations,
    check_migrations,
    load_user_version,
)
from ringrift_operator.state.rows import EloRating, EpochRecord, StateEntry

ALL_TABLES = {
    "state",
    "epochs",
    "job_attempts",
    "node_events",
    "elo_ratings",
    "elo_history",
    "ab_tests",
    "ab_test_games",
    "models",
    "training_hashes",
    "metrics_history",
}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def moved_aside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".corrupt-" in p.name)


async def migrate(path: Path, migrations: tuple[Migration, ...]) -> MigrationResult:
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        return await apply_migrations(conn, migrations=migrations, path=str(path))


def test_shipped_steps_are_numbered_in_order() -> None:
    check_migrations(MIGRATIONS)
    assert SCHEMA_VERSION == len(MIGRATIONS) == 3


@pytest.mark.parametrize(
    "versions",
    [
        pytest.param((2,), id="does-not-start-at-1"),
        pytest.param((1, 3), id="gap"),
        pytest.param((1, 1), id="duplicate"),
        pytest.param((2, 1), id="out-of-order"),
    ],
)
def test_misnumbered_steps_are_rejected(versions: tuple[int, ...]) -> None:
    steps = [Migration(version=v, name=f"v{v}", statements=()) for v in versions]
    with pytest.raises(ValueError, match="expected"):
        check_migrations(steps)


async def test_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    result = await migrate(path, MIGRATIONS)
    assert result == MigrationResult(from_version=0, to_version=SCHEMA_VERSION)
    assert result.applied == SCHEMA_VERSION
    assert tables(path) == ALL_TABLES
    assert user_version(path) == SCHEMA_VERSION


async def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    await migrate(path, MIGRATIONS)
    result = await migrate(path, MIGRATIONS)
    assert result.applied == 0


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION), ids=lambda v: f"from-v{v}")
async def test_store_upgrades_an_older_database_keeping_its_rows(
    tmp_path: Path, start: int
) -> None:
    path = tmp_path / "h.db"
    await migrate(path, MIGRATIONS[:start])
    assert user_version(path) == start
    with sqlite3.connect(path) as conn:  # written by the older operator, v1's tables exist
        conn.execute("INSERT INTO state VALUES ('leader', 'op-old', 1.0)")
        conn.execute("INSERT INTO epochs VALUES (4, 'op-old', 1.0)")

    async with HistoryStore.open(path) as store:
        assert await store.load_schema_version() == SCHEMA_VERSION
        assert await store.load_state(key="leader") == StateEntry("leader", "op-old", 1.0)
        assert await store.fetch_latest_epoch() == EpochRecord(4, "op-old", 1.0)
        # Tables of the newer steps work too.
        await store.record(EloRating("m1", "hex8_2p", 1500.0, 0, 2.0))
        assert await store.fetch_elo_rating(config="hex8_2p", model_id="m1") is not None
    assert tables(path) == ALL_TABLES


async def test_each_step_adds_its_tables(tmp_path: Path) -> None:
    seen: set[str] = set()
    for step in MIGRATIONS:
        path = tmp_path / f"v{step.version}.db"
        await migrate(path, MIGRATIONS[: step.version])
        new = tables(path) - seen
        assert new, f"step {step.version} ({step.name}) created no table"
        seen |= new
    assert seen == ALL_TABLES


async def test_failing_step_rolls_back_to_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    steps = (
        Migration(1, "ok", ("CREATE TABLE a (x INTEGER)",)),
        Migration(2, "broken", ("CREATE TABLE b (x INTEGER)", "CREATE TABLE a (x INTEGER)")),
    )
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        await migrate(path, steps)
    assert user_version(path) == 1
    assert tables(path) == {"a"}  # b went with its failed step


async def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    await migrate(path, MIGRATIONS)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO state VALUES ('k', 'from the future', 1.0)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(SchemaTooNewError, match=rf"version {SCHEMA_VERSION + 1}.*up to 3"):
        await HistoryStore.open(path)

    assert moved_aside(tmp_path) == []
    assert user_version(path) == SCHEMA_VERSION + 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM state").fetchall() == [("from the future",)]


async def test_store_opens_with_its_own_step_list(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    steps = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "extra", ("CREATE TABLE extra (x)",)))
    async with HistoryStore.open(path, migrations=steps) as store:
        assert await store.load_schema_version() == SCHEMA_VERSION + 1
    assert "extra" in tables(path)


async def test_load_user_version_of_a_new_file(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "new.db") as conn:
        assert await load_user_version(conn) == 0
