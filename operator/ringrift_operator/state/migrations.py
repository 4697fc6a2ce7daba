"""The history store's versioned schema: an ordered list of migration steps and their runner.

``PRAGMA user_version`` records the last step applied. ``apply_migrations`` runs the missing steps
in order, each in its own transaction together with the new ``user_version``, so a failing step
leaves the database at the previous version. A database newer than this code is refused with
``SchemaTooNewError`` rather than touched. Called by ``state.history.HistoryStore.open``.

Steps are append-only: never edit a released step, add a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer operator: refuse it instead of risking its history."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the statements taking the database from ``version - 1`` to ``version``."""

    version: int
    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MigrationResult:
    from_version: int
    to_version: int

    @property
    def applied(self) -> int:
        return self.to_version - self.from_version


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="core: state, epochs, job attempts, node events",
        statements=(
            """CREATE TABLE state (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE epochs (
                epoch INTEGER PRIMARY KEY,
                holder TEXT NOT NULL,
                acquired_at REAL NOT NULL
            )""",
            """CREATE TABLE job_attempts (
                uid TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                kind TEXT NOT NULL,
                namespace TEXT NOT NULL,
                name TEXT NOT NULL,
                pod TEXT NOT NULL,
                node TEXT NOT NULL,
                phase TEXT NOT NULL,
                reason TEXT NOT NULL,
                started_at REAL NOT NULL,
                finished_at REAL,
                epoch INTEGER NOT NULL,
                PRIMARY KEY (uid, attempt)
            )""",
            "CREATE INDEX job_attempts_by_owner ON job_attempts (namespace, kind, name, attempt)",
            "CREATE INDEX job_attempts_by_node ON job_attempts (node, started_at)",
            """CREATE TABLE node_events (
                id INTEGER PRIMARY KEY,
                node TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('failure', 'success')),
                reason TEXT NOT NULL,
                job TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX node_events_by_node ON node_events (node, kind, at)",
            "CREATE INDEX node_events_by_time ON node_events (at)",
        ),
    ),
    Migration(
        version=2,
        name="evaluation: Elo ratings and their history, A/B gauntlet tests and games",
        statements=(
            """CREATE TABLE elo_ratings (
                config TEXT NOT NULL,
                model_id TEXT NOT NULL,
                rating REAL NOT NULL,
                games INTEGER NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (config, model_id)
            )""",
            """CREATE TABLE elo_history (
                id INTEGER PRIMARY KEY,
                config TEXT NOT NULL,
                model_id TEXT NOT NULL,
                rating REAL NOT NULL,
                games INTEGER NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX elo_history_by_model ON elo_history (config, model_id, at)",
            """CREATE TABLE ab_tests (
                test_id TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                candidate_model TEXT NOT NULL,
                baseline_model TEXT NOT NULL,
                opponents TEXT NOT NULL,
                training_run TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX ab_tests_by_config ON ab_tests (config, created_at)",
            """CREATE TABLE ab_test_games (
                test_id TEXT NOT NULL REFERENCES ab_tests (test_id) ON DELETE CASCADE,
                shard INTEGER NOT NULL,
                game INTEGER NOT NULL,
                opponent TEXT NOT NULL,
                result TEXT NOT NULL CHECK (result IN ('win', 'loss', 'draw')),
                pod TEXT NOT NULL,
                played_at REAL NOT NULL,
                PRIMARY KEY (test_id, shard, game)
            )""",
        ),
    ),
    Migration(
        version=3,
        name="registry and observability: models, training hashes, metrics history",
        statements=(
            """CREATE TABLE models (
                model_id TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                generation INTEGER NOT NULL,
                uri TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                training_run TEXT NOT NULL,
                created_at REAL NOT NULL,
                promoted INTEGER NOT NULL DEFAULT 0 CHECK (promoted IN (0, 1)),
                promoted_at REAL,
                UNIQUE (config, generation)
            )""",
            # At most one promoted model per config, enforced by the database itself.
            "CREATE UNIQUE INDEX models_promoted ON models (config) WHERE promoted = 1",
            """CREATE TABLE training_hashes (
                digest TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX training_hashes_by_time ON training_hashes (at)",
            "CREATE INDEX training_hashes_by_config ON training_hashes (config, at)",
            """CREATE TABLE metrics_history (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                labels TEXT NOT NULL,
                value REAL NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX metrics_history_by_name ON metrics_history (name, at)",
            "CREATE INDEX metrics_history_by_time ON metrics_history (at)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Raise ``ValueError`` unless the steps are numbered 1, 2, 3, … in order."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, expected {index}"
            )


async def load_user_version(conn: aiosqlite.Connection) -> int:
    """The schema version recorded in the database (0 for a new file)."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def apply_migrations(
    conn: aiosqlite.Connection, *, migrations: Sequence[Migration] = MIGRATIONS, path: str = ""
) -> MigrationResult:
    """Bring an open aiosqlite connection (autocommit mode) up to the last step of ``migrations``.

    ``path`` only names the file in error messages.
    """
    check_migrations(migrations)
    latest = len(migrations)
    current = await load_user_version(conn)
    if current > latest:
        raise SchemaTooNewError(
            f"history database {path or '(in memory)'} has schema version {current}, but this "
            f"operator knows versions up to {latest}; refusing to open it so its history is not "
            f"damaged (run a newer operator, or point this one at another file)"
        )
    for migration in migrations[current:]:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                await conn.execute(statement)
            # user_version lives in the database header and is transactional with the step.
            await conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return MigrationResult(from_version=current, to_version=max(current, latest))
