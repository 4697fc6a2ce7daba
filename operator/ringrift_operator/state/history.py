"""The history store: the seed's StateManager as one aiosqlite database of what happened.

Live state lives in Kubernetes objects; this database only remembers history (job attempts, node
reputation, Elo, A/B gauntlet games, the model registry, metrics, training hashes, leader epochs).
So the store is built to never stop the operator: a corrupt file is moved aside and a fresh one
started, and a busy database is retried with backoff before a clear ``HistoryBusyError``.
WAL with ``synchronous = NORMAL``: a committed batch is in the WAL before ``COMMIT`` returns, so a
killed process (SIGKILL, OOM) loses nothing acknowledged (tests/unit/state/test_crash.py); only a
power cut may lose the last commits, which history can afford better than an fsync per batch.

Opened once at startup (``HistoryStore.open``) and passed to reconcilers and loops in their deps.
Writes go through ``record``/``record_many`` (one transaction, ``executemany`` per table) or
``enqueue`` + ``flush`` for callers that batch over time. Reads are typed ``fetch_``/``list_``
methods. One connection serves the process; an ``asyncio.Lock`` keeps its transactions apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from ringrift_operator.state.migrations import (
    MIGRATIONS,
    Migration,
    SchemaTooNewError,
    apply_migrations,
    load_user_version,
)
from ringrift_operator.state.rows import (
    AbTest,
    AbTestGame,
    AbTestTally,
    EloRating,
    EpochRecord,
    GameResult,
    HistoryRow,
    IntegrityReport,
    JobAttempt,
    MetricSample,
    ModelRecord,
    NodeEvent,
    NodeEventKind,
    NodeReputation,
    StateEntry,
    TrainingHash,
)

__all__ = [
    "HistoryBusyError",
    "HistoryError",
    "HistoryStore",
    "SchemaTooNewError",
]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]
Clock = Callable[[], float]
Params = tuple[object, ...]


class HistoryError(RuntimeError):
    """The history store cannot do what was asked (closed, or busy for too long)."""


class HistoryBusyError(HistoryError):
    """The database stayed locked by another connection through every retry."""


class _CorruptDatabaseError(Exception):
    """Internal: the file is not a usable SQLite database; ``open`` moves it aside.

    Carries the still-open connection: SQLite deletes the -wal/-shm files when it closes, so
    they are moved aside first to keep what they hold for a post-mortem.
    """

    def __init__(self, reason: str, *, conn: aiosqlite.Connection) -> None:
        super().__init__(reason)
        self.conn = conn


# -- row <-> SQL -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    params: Callable[[Any], Params]


@dataclass(frozen=True, slots=True)
class _Writer:
    row_type: type
    statements: tuple[_Statement, ...]


def _labels_json(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


# In dependency order: a batch is written table by table in this order (keeping the callers' order
# within a table), so an A/B test recorded in the same batch as its games lands first.
_WRITERS: tuple[_Writer, ...] = (
    _Writer(
        StateEntry,
        (
            _Statement(
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                lambda r: (r.key, r.value, r.updated_at),
            ),
        ),
    ),
    _Writer(
        EpochRecord,
        (
            _Statement(
                "INSERT INTO epochs (epoch, holder, acquired_at) VALUES (?, ?, ?) "
                "ON CONFLICT (epoch) DO NOTHING",
                lambda r: (r.epoch, r.holder, r.acquired_at),
            ),
        ),
    ),
    _Writer(
        JobAttempt,
        (
            _Statement(
                "INSERT INTO job_attempts (uid, attempt, kind, namespace, name, pod, node, phase, "
                "reason, started_at, finished_at, epoch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (uid, attempt) DO UPDATE SET kind = excluded.kind, "
                "namespace = excluded.namespace, name = excluded.name, pod = excluded.pod, "
                "node = excluded.node, phase = excluded.phase, reason = excluded.reason, "
                "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                "epoch = excluded.epoch",
                lambda r: (
                    r.uid,
                    r.attempt,
                    r.kind,
                    r.namespace,
                    r.name,
                    r.pod,
                    r.node,
                    r.phase,
                    r.reason,
                    r.started_at,
                    r.finished_at,
                    r.epoch,
                ),
            ),
        ),
    ),
    _Writer(
        NodeEvent,
        (
            _Statement(
                "INSERT INTO node_events (node, kind, reason, job, at) VALUES (?, ?, ?, ?, ?)",
                lambda r: (r.node, str(r.kind), r.reason, r.job, r.at),
            ),
        ),
    ),
    _Writer(
        EloRating,
        (
            _Statement(
                "INSERT INTO elo_ratings (config, model_id, rating, games, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (config, model_id) DO UPDATE SET "
                "rating = excluded.rating, games = excluded.games, "
                "updated_at = excluded.updated_at",
                lambda r: (r.config, r.model_id, r.rating, r.games, r.updated_at),
            ),
            _Statement(
                "INSERT INTO elo_history (config, model_id, rating, games, at) "
                "VALUES (?, ?, ?, ?, ?)",
                lambda r: (r.config, r.model_id, r.rating, r.games, r.updated_at),
            ),
        ),
    ),
    _Writer(
        AbTest,
        (
            _Statement(
                "INSERT INTO ab_tests (test_id, config, candidate_model, baseline_model, "
                "opponents, training_run, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (test_id) DO NOTHING",
                lambda r: (
                    r.test_id,
                    r.config,
                    r.candidate_model,
                    r.baseline_model,
                    json.dumps(list(r.opponents)),
                    r.training_run,
                    r.created_at,
                ),
            ),
        ),
    ),
    _Writer(
        AbTestGame,
        (
            _Statement(
                "INSERT INTO ab_test_games (test_id, shard, game, opponent, result, pod, "
                "played_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (test_id, shard, game) DO NOTHING",
                lambda r: (
                    r.test_id,
                    r.shard,
                    r.game,
                    r.opponent,
                    str(r.result),
                    r.pod,
                    r.played_at,
                ),
            ),
        ),
    ),
    _Writer(
        ModelRecord,
        (
            _Statement(
                "INSERT INTO models (model_id, config, generation, uri, sha256, training_run, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_id) DO UPDATE SET "
                "config = excluded.config, generation = excluded.generation, "
                "uri = excluded.uri, sha256 = excluded.sha256, "
                "training_run = excluded.training_run, created_at = excluded.created_at",
                lambda r: (
                    r.model_id,
                    r.config,
                    r.generation,
                    r.uri,
                    r.sha256,
                    r.training_run,
                    r.created_at,
                ),
            ),
        ),
    ),
    _Writer(
        MetricSample,
        (
            _Statement(
                "INSERT INTO metrics_history (name, labels, value, at) VALUES (?, ?, ?, ?)",
                lambda r: (r.name, _labels_json(r.labels), r.value, r.at),
            ),
        ),
    ),
    _Writer(
        TrainingHash,
        (
            _Statement(
                "INSERT INTO training_hashes (digest, config, at) VALUES (?, ?, ?) "
                "ON CONFLICT (digest) DO NOTHING",
                lambda r: (r.digest, r.config, r.at),
            ),
        ),
    ),
)

_WRITER_TYPES = frozenset(writer.row_type for writer in _WRITERS)


def _check_row(row: object) -> None:
    if type(row) not in _WRITER_TYPES:
        raise TypeError(f"the history store cannot record {type(row).__name__}")
    if isinstance(row, ModelRecord) and (row.promoted or row.promoted_at is not None):
        raise ValueError(
            f"model {row.model_id!r}: promotion is recorded by promote_model, not by writing "
            f"a promoted ModelRecord"
        )


def _plan_batch(rows: Sequence[HistoryRow]) -> list[tuple[str, list[Params]]]:
    """Group rows by table in dependency order: one ``executemany`` per statement."""
    by_type: dict[type, list[HistoryRow]] = {}
    for row in rows:
        _check_row(row)
        by_type.setdefault(type(row), []).append(row)
    plan: list[tuple[str, list[Params]]] = []
    for writer in _WRITERS:
        group = by_type.get(writer.row_type)
        if group:
            for statement in writer.statements:
                plan.append((statement.sql, [statement.params(row) for row in group]))
    return plan


_JOB_ATTEMPT_COLUMNS = (
    "kind, namespace, name, uid, attempt, phase, started_at, epoch, pod, node, reason, finished_at"
)
_MODEL_COLUMNS = (
    "model_id, config, generation, uri, sha256, created_at, training_run, promoted, promoted_at"
)


def _job_attempt(row: sqlite3.Row) -> JobAttempt:
    return JobAttempt(*row)


def _node_event(row: sqlite3.Row) -> NodeEvent:
    node, kind, at, reason, job = row
    return NodeEvent(node=node, kind=NodeEventKind(kind), at=at, reason=reason, job=job)


def _ab_test(row: sqlite3.Row) -> AbTest:
    test_id, config, candidate, baseline, created_at, opponents, training_run = row
    return AbTest(
        test_id=test_id,
        config=config,
        candidate_model=candidate,
        baseline_model=baseline,
        created_at=created_at,
        opponents=tuple(json.loads(opponents)),
        training_run=training_run,
    )


def _model(row: sqlite3.Row) -> ModelRecord:
    model_id, config, generation, uri, sha256, created_at, training_run, promoted, promoted_at = row
    return ModelRecord(
        model_id=model_id,
        config=config,
        generation=generation,
        uri=uri,
        sha256=sha256,
        created_at=created_at,
        training_run=training_run,
        promoted=bool(promoted),
        promoted_at=promoted_at,
    )


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error).lower()
    return "locked" in message or "busy" in message


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    message = str(error).lower()
    return "not a database" in message or "malformed" in message


def _move_aside(path: Path, *, now: float) -> Path:
    """Rename the database and its -wal/-shm to ``<name>.corrupt-<unix time>[-wal|-shm]``.

    The side files keep their suffix after the new name, so SQLite still pairs them if someone
    opens the moved file to look at what is left.
    """
    stem = f"{path.name}.corrupt-{int(now)}"
    target = path.with_name(stem)
    extra = 0
    while any(target.with_name(target.name + s).exists() for s in ("", "-wal", "-shm")):
        extra += 1
        target = path.with_name(f"{stem}.{extra}")
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    if path.exists():
        path.rename(target)
    return target


async def _integrity(conn: aiosqlite.Connection, *, quick: bool) -> IntegrityReport:
    pragma = "quick_check" if quick else "integrity_check"
    rows = await conn.execute_fetchall(f"PRAGMA {pragma}")
    messages = tuple(str(row[0]) for row in rows)
    return IntegrityReport(ok=messages == ("ok",), messages=messages)


async def _connect(
    path: Path, *, busy_timeout_ms: int, check: bool, migrations: Sequence[Migration]
) -> aiosqlite.Connection:
    """Connect, configure, check and migrate; ``_CorruptDatabaseError`` if the file is broken."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly a batch.
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        if check:
            report = await _integrity(conn, quick=True)
            if not report.ok:
                raise _CorruptDatabaseError("; ".join(report.messages[:3]), conn=conn)
        await apply_migrations(conn, migrations=migrations, path=str(path))
    except _CorruptDatabaseError:
        raise
    except sqlite3.DatabaseError as error:
        if _is_corrupt(error):
            raise _CorruptDatabaseError(str(error), conn=conn) from error
        await conn.close()
        raise
    except BaseException:
        await conn.close()
        raise
    return conn


# -- the store ---------------------------------------------------------------------------------


class HistoryStore:
    """The operator's history database. Build it with ``HistoryStore.open``."""

    def __init__(
        self,
        *,
        conn: aiosqlite.Connection,
        path: Path,
        retries: int,
        retry_base_s: float,
        sleep: Sleep,
        logger: logging.Logger,
        recovered_from: Path | None,
    ) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._retries = retries
        self._retry_base_s = retry_base_s
        self._sleep = sleep
        self._logger = logger
        self._recovered_from = recovered_from
        self._lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._pending: list[HistoryRow] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = 30_000,
        retries: int = 5,
        retry_base_s: float = 0.1,
        check: bool = True,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        logger: logging.Logger | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> _Opening:
        """Open (creating, migrating, or recovering) the store at ``path``.

        Await it (``store = await HistoryStore.open(p)``) or use it as a context manager
        (``async with HistoryStore.open(p) as store``). A file that is not a database or fails
        ``PRAGMA quick_check`` (skipped with ``check=False``) is moved aside to
        ``<name>.corrupt-<unix time>`` with one WARNING and a fresh store is started. A database
        written by a newer schema raises ``SchemaTooNewError``. Busy/locked errors are retried
        ``retries`` times in all, sleeping ``retry_base_s * 2**n`` with ``sleep`` in between;
        ``clock`` only names moved-aside files.
        """
        if retries < 1:
            raise ValueError("retries must be at least 1")

        async def opening() -> HistoryStore:
            db_path = Path(path)
            db_path.parent.mkdir(parents=True, exist_ok=True)
            log = logger or logging.getLogger(__name__)
            recovered_from: Path | None = None
            try:
                conn = await _connect(
                    db_path, busy_timeout_ms=busy_timeout_ms, check=check, migrations=migrations
                )
            except _CorruptDatabaseError as error:
                try:
                    recovered_from = _move_aside(db_path, now=clock())
                finally:
                    with contextlib.suppress(sqlite3.Error):  # closing a broken file may complain
                        await error.conn.close()
                log.warning(
                    "history database %s is corrupt (%s): moved it aside to %s and started a "
                    "fresh, empty history; live state is in Kubernetes, only history is lost",
                    db_path,
                    " ".join(str(error).split())[:300],  # one line, whatever SQLite said
                    recovered_from,
                )
                try:
                    conn = await _connect(
                        db_path,
                        busy_timeout_ms=busy_timeout_ms,
                        check=False,
                        migrations=migrations,
                    )
                except _CorruptDatabaseError as again:
                    await again.conn.close()
                    raise HistoryError(
                        f"history database {db_path}: a fresh file is unusable too: {again}"
                    ) from again
            return cls(
                conn=conn,
                path=db_path,
                retries=retries,
                retry_base_s=retry_base_s,
                sleep=sleep,
                logger=log,
                recovered_from=recovered_from,
            )

        return _Opening(opening())

    async def close(self) -> None:
        """Flush what is queued and close the connection; closing twice is harmless."""
        if self._conn is None:
            return
        try:
            await self.flush()
        finally:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def recovered_from(self) -> Path | None:
        """Where a corrupt database was moved to when this store was opened, if it was."""
        return self._recovered_from

    @property
    def pending(self) -> int:
        """Rows enqueued and not yet flushed."""
        return len(self._pending)

    async def load_schema_version(self) -> int:
        return await self._read(load_user_version)

    async def integrity_check(self, *, quick: bool = False) -> IntegrityReport:
        """Run ``PRAGMA integrity_check`` (or the faster ``quick_check``)."""
        return await self._read(lambda conn: _integrity(conn, quick=quick))

    # -- writes ------------------------------------------------------------------------------

    async def record(self, row: HistoryRow) -> None:
        """Write one row (see ``record_many`` for what writing means per table)."""
        await self.record_many((row,))

    async def record_many(self, rows: Iterable[HistoryRow]) -> int:
        """Write rows of any tables in ONE transaction: all land, or none do.

        Per table: job attempts, Elo ratings, models and state keys are upserts (an Elo rating
        also appends to its history); A/B tests, games, epochs and training hashes keep the first
        write of their key; node events and metrics append. Returns the number of rows given.
        """
        batch = list(rows)
        plan = _plan_batch(batch)
        if not plan:
            return 0

        async def write(conn: aiosqlite.Connection) -> None:
            for sql, params in plan:
                await conn.executemany(sql, params)

        await self._write(write)
        return len(batch)

    def enqueue(self, *rows: HistoryRow) -> int:
        """Queue rows for the next ``flush`` (no I/O); returns how many are now pending."""
        for row in rows:
            _check_row(row)
        self._pending.extend(rows)
        return len(self._pending)

    async def flush(self) -> int:
        """Write every queued row in one transaction; returns how many were written.

        If the database stays busy the rows stay queued for the next flush; any other error
        drops them (a batch that cannot be written would otherwise fail forever) and is raised.
        """
        async with self._flush_lock:
            if not self._pending:
                return 0
            rows, self._pending = self._pending, []
            try:
                return await self.record_many(rows)
            except HistoryBusyError:
                self._pending[:0] = rows
                raise

    async def save_state(self, *, key: str, value: str, now: float) -> None:
        await self.record(StateEntry(key=key, value=value, updated_at=now))

    async def promote_model(self, *, model_id: str, now: float) -> ModelRecord:
        """Make ``model_id`` the promoted model of its config, demoting the previous one.

        Promoting the already-promoted model changes nothing (its ``promoted_at`` is kept).
        Raises ``LookupError`` for a model not in the registry.
        """

        async def promote(conn: aiosqlite.Connection) -> ModelRecord:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT config, promoted FROM models WHERE model_id = ?", (model_id,)
                )
            )
            if not rows:
                raise LookupError(f"no model {model_id!r} in the registry")
            config, promoted = rows[0]
            if not promoted:
                await conn.execute(
                    "UPDATE models SET promoted = 0 WHERE config = ? AND promoted = 1", (config,)
                )
                await conn.execute(
                    "UPDATE models SET promoted = 1, promoted_at = ? WHERE model_id = ?",
                    (now, model_id),
                )
            found = await conn.execute_fetchall(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE model_id = ?", (model_id,)
            )
            return _model(next(iter(found)))

        return await self._write(promote)

    async def prune_metrics(self, *, before: float) -> int:
        """Delete metric samples older than ``before``; returns how many went."""
        return await self._delete("DELETE FROM metrics_history WHERE at < ?", (before,))

    async def prune_node_events(self, *, before: float) -> int:
        """Delete node events older than ``before``; returns how many went."""
        return await self._delete("DELETE FROM node_events WHERE at < ?", (before,))

    # -- reads -------------------------------------------------------------------------------

    async def load_state(self, *, key: str) -> StateEntry | None:
        rows = await self._fetch("SELECT key, value, updated_at FROM state WHERE key = ?", (key,))
        return StateEntry(*rows[0]) if rows else None

    async def fetch_latest_epoch(self) -> EpochRecord | None:
        rows = await self._fetch(
            "SELECT epoch, holder, acquired_at FROM epochs ORDER BY epoch DESC LIMIT 1"
        )
        return EpochRecord(*rows[0]) if rows else None

    async def list_epochs(self, *, limit: int = 100) -> list[EpochRecord]:
        """The latest ``limit`` epochs, newest first."""
        rows = await self._fetch(
            "SELECT epoch, holder, acquired_at FROM epochs ORDER BY epoch DESC LIMIT ?", (limit,)
        )
        return [EpochRecord(*row) for row in rows]

    async def fetch_job_attempt(self, *, uid: str, attempt: int) -> JobAttempt | None:
        rows = await self._fetch(
            f"SELECT {_JOB_ATTEMPT_COLUMNS} FROM job_attempts WHERE uid = ? AND attempt = ?",
            (uid, attempt),
        )
        return _job_attempt(rows[0]) if rows else None

    async def list_job_attempts(self, *, kind: str, namespace: str, name: str) -> list[JobAttempt]:
        """Every recorded attempt of one resource, by attempt number (across uids)."""
        rows = await self._fetch(
            f"SELECT {_JOB_ATTEMPT_COLUMNS} FROM job_attempts "
            "WHERE namespace = ? AND kind = ? AND name = ? ORDER BY attempt, started_at",
            (namespace, kind, name),
        )
        return [_job_attempt(row) for row in rows]

    async def list_node_events(
        self, *, node: str, since: float, kind: NodeEventKind | None = None
    ) -> list[NodeEvent]:
        """Events of one node at or after ``since``, oldest first (only ``kind`` if given)."""
        sql = "SELECT node, kind, at, reason, job FROM node_events WHERE node = ? AND at >= ?"
        params: Params = (node, since)
        if kind is not None:
            sql += " AND kind = ?"
            params += (str(kind),)
        rows = await self._fetch(sql + " ORDER BY at, id", params)
        return [_node_event(row) for row in rows]

    async def fetch_failure_counts(
        self, *, since: float, nodes: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Failures per node at or after ``since`` (nodes without failures are absent).

        This is what feeds ``NodeInfo.recent_failures`` for the ranking's reputation filter.
        """
        sql = "SELECT node, COUNT(*) FROM node_events WHERE kind = 'failure' AND at >= ?"
        params: Params = (since,)
        if nodes is not None:
            wanted = tuple(nodes)
            if not wanted:
                return {}
            sql += f" AND node IN ({', '.join('?' * len(wanted))})"
            params += wanted
        rows = await self._fetch(sql + " GROUP BY node", params)
        return {node: int(count) for node, count in rows}

    async def list_node_reputation(self, *, since: float) -> list[NodeReputation]:
        """Failures and successes of every node with events at or after ``since``, by name."""
        rows = await self._fetch(
            "SELECT node, "
            "SUM(kind = 'failure'), SUM(kind = 'success'), "
            "MAX(CASE WHEN kind = 'failure' THEN at END), "
            "MAX(CASE WHEN kind = 'success' THEN at END) "
            "FROM node_events WHERE at >= ? GROUP BY node ORDER BY node",
            (since,),
        )
        return [
            NodeReputation(
                node=node,
                failures=int(failures),
                successes=int(successes),
                last_failure_at=last_failure,
                last_success_at=last_success,
            )
            for node, failures, successes, last_failure, last_success in rows
        ]

    async def fetch_elo_rating(self, *, config: str, model_id: str) -> EloRating | None:
        rows = await self._fetch(
            "SELECT model_id, config, rating, games, updated_at FROM elo_ratings "
            "WHERE config = ? AND model_id = ?",
            (config, model_id),
        )
        return EloRating(*rows[0]) if rows else None

    async def list_elo_ratings(self, *, config: str) -> list[EloRating]:
        """Current ratings of one config, best first."""
        rows = await self._fetch(
            "SELECT model_id, config, rating, games, updated_at FROM elo_ratings "
            "WHERE config = ? ORDER BY rating DESC, model_id",
            (config,),
        )
        return [EloRating(*row) for row in rows]

    async def list_elo_history(
        self, *, config: str, model_id: str, since: float | None = None
    ) -> list[EloRating]:
        """Every rating a model had in a config, oldest first."""
        rows = await self._fetch(
            "SELECT model_id, config, rating, games, at FROM elo_history "
            "WHERE config = ? AND model_id = ? AND at >= ? ORDER BY at, id",
            (config, model_id, since if since is not None else float("-inf")),
        )
        return [EloRating(*row) for row in rows]

    async def fetch_ab_test(self, *, test_id: str) -> AbTest | None:
        rows = await self._fetch(
            "SELECT test_id, config, candidate_model, baseline_model, created_at, opponents, "
            "training_run FROM ab_tests WHERE test_id = ?",
            (test_id,),
        )
        return _ab_test(rows[0]) if rows else None

    async def list_ab_tests(self, *, config: str) -> list[AbTest]:
        """A/B tests of one config, newest first."""
        rows = await self._fetch(
            "SELECT test_id, config, candidate_model, baseline_model, created_at, opponents, "
            "training_run FROM ab_tests WHERE config = ? ORDER BY created_at DESC, test_id",
            (config,),
        )
        return [_ab_test(row) for row in rows]

    async def list_ab_test_games(self, *, test_id: str) -> list[AbTestGame]:
        rows = await self._fetch(
            "SELECT test_id, opponent, result, shard, game, played_at, pod FROM ab_test_games "
            "WHERE test_id = ? ORDER BY shard, game",
            (test_id,),
        )
        return [
            AbTestGame(
                test_id=test_id_,
                opponent=opponent,
                result=GameResult(result),
                shard=shard,
                game=game,
                played_at=played_at,
                pod=pod,
            )
            for test_id_, opponent, result, shard, game, played_at, pod in rows
        ]

    async def list_ab_test_tallies(self, *, test_id: str) -> list[AbTestTally]:
        """The candidate's wins, losses and draws per opponent, by opponent."""
        rows = await self._fetch(
            "SELECT opponent, SUM(result = 'win'), SUM(result = 'loss'), SUM(result = 'draw') "
            "FROM ab_test_games WHERE test_id = ? GROUP BY opponent ORDER BY opponent",
            (test_id,),
        )
        return [
            AbTestTally(opponent=opponent, wins=int(w), losses=int(losses), draws=int(d))
            for opponent, w, losses, d in rows
        ]

    async def fetch_model(self, *, model_id: str) -> ModelRecord | None:
        rows = await self._fetch(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE model_id = ?", (model_id,)
        )
        return _model(rows[0]) if rows else None

    async def fetch_promoted_model(self, *, config: str) -> ModelRecord | None:
        """The model currently promoted for ``config``, if any."""
        rows = await self._fetch(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE config = ? AND promoted = 1", (config,)
        )
        return _model(rows[0]) if rows else None

    async def list_models(self, *, config: str) -> list[ModelRecord]:
        """The registry of one config, by generation."""
        rows = await self._fetch(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE config = ? ORDER BY generation",
            (config,),
        )
        return [_model(row) for row in rows]

    async def list_metrics(
        self,
        *,
        name: str,
        since: float,
        until: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[MetricSample]:
        """Samples of ``name`` in [since, until), oldest first, whose labels include ``labels``."""
        rows = await self._fetch(
            "SELECT name, value, at, labels FROM metrics_history "
            "WHERE name = ? AND at >= ? AND at < ? ORDER BY at, id",
            (name, since, until if until is not None else float("inf")),
        )
        wanted = dict(labels or {})
        samples = []
        for name_, value, at, labels_json in rows:
            sample_labels: dict[str, str] = json.loads(labels_json)
            if all(sample_labels.get(k) == v for k, v in wanted.items()):
                samples.append(MetricSample(name=name_, value=value, at=at, labels=sample_labels))
        return samples

    async def fetch_training_hash(self, *, digest: str) -> TrainingHash | None:
        rows = await self._fetch(
            "SELECT digest, config, at FROM training_hashes WHERE digest = ?", (digest,)
        )
        return TrainingHash(*rows[0]) if rows else None

    async def list_training_hashes(
        self, *, limit: int, config: str | None = None
    ) -> list[TrainingHash]:
        """The last ``limit`` training hashes (of ``config`` if given), newest first."""
        if config is None:
            rows = await self._fetch(
                "SELECT digest, config, at FROM training_hashes ORDER BY at DESC, digest LIMIT ?",
                (limit,),
            )
        else:
            rows = await self._fetch(
                "SELECT digest, config, at FROM training_hashes WHERE config = ? "
                "ORDER BY at DESC, digest LIMIT ?",
                (config, limit),
            )
        return [TrainingHash(*row) for row in rows]

    # -- plumbing ----------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise HistoryError(f"history store {self._path} is closed")
        return self._conn

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``, retrying busy/locked errors with exponential backoff; others propagate."""
        attempt = 0
        while True:
            try:
                return await op()
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
                attempt += 1
                if attempt >= self._retries:
                    raise HistoryBusyError(
                        f"history database {self._path} is still locked by another connection "
                        f"after {attempt} attempts ({what}): {error}"
                    ) from error
                delay = self._retry_base_s * 2 ** (attempt - 1)
                self._logger.debug(
                    "history database busy (%s), retry %d in %.2fs: %s", what, attempt, delay, error
                )
                await self._sleep(delay)

    async def _write(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction (write lock taken up front), with retries."""
        conn = self._connection()

        async def transaction() -> T:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(conn)
                await conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise
            return result

        async with self._lock:
            return await self._retrying("write", transaction)

    async def _read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        conn = self._connection()
        async with self._lock:
            return await self._retrying("read", lambda: fn(conn))

    async def _fetch(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async def fetch(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
            return list(await conn.execute_fetchall(sql, params))

        return await self._read(fetch)

    async def _delete(self, sql: str, params: Params) -> int:
        async def delete(conn: aiosqlite.Connection) -> int:
            async with conn.execute(sql, params) as cursor:
                return int(cursor.rowcount)

        return await self._write(delete)


class _Opening:
    """What ``HistoryStore.open`` returns: awaitable, and an async context manager that closes."""

    def __init__(self, opening: Awaitable[HistoryStore]) -> None:
        self._opening = opening
        self._store: HistoryStore | None = None

    def __await__(self) -> Generator[Any, None, HistoryStore]:
        return self._opening.__await__()

    async def __aenter__(self) -> HistoryStore:
        self._store = await self._opening
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()
