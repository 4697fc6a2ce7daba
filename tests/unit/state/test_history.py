"""HistoryStore: every table's round trip, batching, the write queue, and busy-database retries."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ringrift_operator.state.history import HistoryBusyError, HistoryError, HistoryStore
from ringrift_operator.state.rows import (
    AbTest,
    AbTestGame,
    AbTestTally,
    EloRating,
    EpochRecord,
    GameResult,
    HistoryRow,
    JobAttempt,
    MetricSample,
    ModelRecord,
    NodeEvent,
    NodeEventKind,
    NodeReputation,
    StateEntry,
    TrainingHash,
)

FAIL = NodeEventKind.FAILURE
OK = NodeEventKind.SUCCESS


class FakeSleep:
    """Records the delays asked for and runs a hook on each, instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.on_sleep: Callable[[int], None] = lambda n: None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.on_sleep(len(self.delays))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def store(db_path: Path, sleep: FakeSleep) -> AsyncIterator[HistoryStore]:
    # A 1 ms busy timeout makes a held lock surface as "database is locked" at once.
    async with HistoryStore.open(db_path, busy_timeout_ms=1, sleep=sleep) as opened:
        yield opened


def attempt(n: int, **overrides: object) -> JobAttempt:
    fields: dict[str, object] = {
        "kind": "SelfplayJob",
        "namespace": "ringrift",
        "name": "sp-hex8",
        "uid": "uid-1",
        "attempt": n,
        "phase": "Running",
        "started_at": 100.0 + n,
        "epoch": 3,
        "pod": f"sp-hex8-{n}",
        "node": "gpu-a",
    }
    fields.update(overrides)
    return JobAttempt(**fields)  # type: ignore[arg-type]


def model(model_id: str, generation: int, config: str = "hex8_2p") -> ModelRecord:
    return ModelRecord(
        model_id=model_id,
        config=config,
        generation=generation,
        uri=f"s3://models/{model_id}.pt",
        sha256="ab" * 32,
        created_at=float(generation),
        training_run=f"ringrift/train-{generation}",
    )


AB_TEST = AbTest(
    test_id="t1",
    config="hex8_2p",
    candidate_model="m2",
    baseline_model="m1",
    created_at=50.0,
    opponents=("m1", "heuristic"),
    training_run="ringrift/train-2",
)


def game(shard: int, n: int, opponent: str, result: GameResult) -> AbTestGame:
    return AbTestGame(
        test_id="t1",
        opponent=opponent,
        result=result,
        shard=shard,
        game=n,
        played_at=60.0 + n,
        pod=f"gauntlet-{shard}",
    )


# -- lifecycle ---------------------------------------------------------------------------------


async def test_open_sets_wal_and_pragmas(store: HistoryStore, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert await store.load_schema_version() == 3
    assert store.recovered_from is None


async def test_reopen_keeps_data(db_path: Path) -> None:
    async with HistoryStore.open(db_path) as store:
        await store.save_state(key="leader", value="op-0", now=1.0)
        await store.record(EpochRecord(epoch=7, holder="op-0", acquired_at=1.0))
    async with HistoryStore.open(db_path) as store:
        assert await store.load_state(key="leader") == StateEntry("leader", "op-0", 1.0)
        assert await store.fetch_latest_epoch() == EpochRecord(7, "op-0", 1.0)


async def test_awaited_open_and_explicit_close(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    await store.close()
    await store.close()  # twice is harmless
    with pytest.raises(HistoryError, match="closed"):
        await store.load_state(key="x")


async def test_close_flushes_the_queue(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    store.enqueue(StateEntry("k", "v", 1.0))
    await store.close()
    async with HistoryStore.open(db_path) as reopened:
        assert await reopened.load_state(key="k") == StateEntry("k", "v", 1.0)


def test_open_refuses_zero_retries(db_path: Path) -> None:
    with pytest.raises(ValueError, match="retries"):
        HistoryStore.open(db_path, retries=0)


# -- round trips, table by table ---------------------------------------------------------------


async def test_state_upsert(store: HistoryStore) -> None:
    assert await store.load_state(key="role") is None
    await store.save_state(key="role", value="follower", now=1.0)
    await store.save_state(key="role", value="leader", now=2.0)
    assert await store.load_state(key="role") == StateEntry("role", "leader", 2.0)


async def test_epochs_newest_first_and_first_write_wins(store: HistoryStore) -> None:
    await store.record_many(
        [
            EpochRecord(1, "op-a", 10.0),
            EpochRecord(2, "op-b", 20.0),
            EpochRecord(3, "op-a", 30.0),
            EpochRecord(2, "op-c", 99.0),  # same epoch again: the first holder stays
        ]
    )
    assert await store.list_epochs(limit=2) == [
        EpochRecord(3, "op-a", 30.0),
        EpochRecord(2, "op-b", 20.0),
    ]
    assert await store.fetch_latest_epoch() == EpochRecord(3, "op-a", 30.0)


async def test_empty_epochs(store: HistoryStore) -> None:
    assert await store.fetch_latest_epoch() is None
    assert await store.list_epochs() == []


async def test_job_attempts_round_trip_and_update(store: HistoryStore) -> None:
    await store.record_many([attempt(0), attempt(1, node="")])
    finished = attempt(0, phase="Failed", reason="OOMKilled", finished_at=150.0)
    await store.record(finished)
    assert await store.fetch_job_attempt(uid="uid-1", attempt=0) == finished
    assert await store.list_job_attempts(
        kind="SelfplayJob", namespace="ringrift", name="sp-hex8"
    ) == [finished, attempt(1, node="")]
    assert await store.fetch_job_attempt(uid="uid-1", attempt=9) is None
    assert await store.list_job_attempts(kind="TrainingRun", namespace="ringrift", name="x") == []


async def test_node_events_and_failures_since(store: HistoryStore) -> None:
    await store.record_many(
        [
            NodeEvent("gpu-a", FAIL, at=10.0, reason="OOMKilled", job="ringrift/sp-1"),
            NodeEvent("gpu-a", OK, at=20.0),
            NodeEvent("gpu-a", FAIL, at=30.0, reason="Evicted"),
            NodeEvent("gpu-b", FAIL, at=5.0),
        ]
    )
    assert await store.list_node_events(node="gpu-a", since=15.0, kind=FAIL) == [
        NodeEvent("gpu-a", FAIL, at=30.0, reason="Evicted"),
    ]
    assert [e.at for e in await store.list_node_events(node="gpu-a", since=0.0)] == [
        10.0,
        20.0,
        30.0,
    ]


@pytest.mark.parametrize(
    ("since", "nodes", "expected"),
    [
        pytest.param(0.0, None, {"gpu-a": 2, "gpu-b": 1}, id="all-time"),
        pytest.param(8.0, None, {"gpu-a": 2}, id="window-drops-old-failures"),
        pytest.param(15.0, None, {"gpu-a": 1}, id="window-inclusive-of-since"),
        pytest.param(0.0, ["gpu-b", "gpu-c"], {"gpu-b": 1}, id="only-asked-nodes"),
        pytest.param(0.0, [], {}, id="no-nodes"),
        pytest.param(31.0, None, {}, id="nothing-recent"),
    ],
)
async def test_failure_counts(
    store: HistoryStore, since: float, nodes: list[str] | None, expected: dict[str, int]
) -> None:
    await store.record_many(
        [
            NodeEvent("gpu-a", FAIL, at=10.0),
            NodeEvent("gpu-a", OK, at=12.0),
            NodeEvent("gpu-a", FAIL, at=15.0),
            NodeEvent("gpu-b", FAIL, at=5.0),
            NodeEvent("gpu-c", OK, at=5.0),
        ]
    )
    assert await store.fetch_failure_counts(since=since, nodes=nodes) == expected


async def test_node_reputation(store: HistoryStore) -> None:
    await store.record_many(
        [
            NodeEvent("gpu-b", OK, at=1.0),
            NodeEvent("gpu-a", FAIL, at=10.0),
            NodeEvent("gpu-a", OK, at=12.0),
            NodeEvent("gpu-a", FAIL, at=15.0),
        ]
    )
    assert await store.list_node_reputation(since=0.0) == [
        NodeReputation("gpu-a", failures=2, successes=1, last_failure_at=15.0, last_success_at=12),
        NodeReputation("gpu-b", failures=0, successes=1, last_failure_at=None, last_success_at=1),
    ]


async def test_prune_node_events(store: HistoryStore) -> None:
    await store.record_many([NodeEvent("n", FAIL, at=float(t)) for t in range(10)])
    assert await store.prune_node_events(before=7.0) == 7
    assert await store.fetch_failure_counts(since=0.0) == {"n": 3}


async def test_elo_current_and_history(store: HistoryStore) -> None:
    await store.record_many(
        [
            EloRating("m1", "hex8_2p", 1500.0, 0, 1.0),
            EloRating("m2", "hex8_2p", 1550.0, 40, 2.0),
            EloRating("m1", "hex8_2p", 1480.0, 40, 3.0),
            EloRating("m1", "square8_2p", 1600.0, 10, 3.0),
        ]
    )
    assert await store.list_elo_ratings(config="hex8_2p") == [
        EloRating("m2", "hex8_2p", 1550.0, 40, 2.0),
        EloRating("m1", "hex8_2p", 1480.0, 40, 3.0),
    ]
    assert await store.fetch_elo_rating(config="hex8_2p", model_id="m1") == EloRating(
        "m1", "hex8_2p", 1480.0, 40, 3.0
    )
    history = await store.list_elo_history(config="hex8_2p", model_id="m1")
    assert [(e.rating, e.updated_at) for e in history] == [(1500.0, 1.0), (1480.0, 3.0)]
    recent = await store.list_elo_history(config="hex8_2p", model_id="m1", since=2.0)
    assert [e.rating for e in recent] == [1480.0]
    assert await store.fetch_elo_rating(config="hex8_2p", model_id="nope") is None


async def test_ab_test_round_trip_and_first_write_wins(store: HistoryStore) -> None:
    await store.record(AB_TEST)
    await store.record(AbTest("t1", "hex8_2p", "other", "other", created_at=99.0))
    assert await store.fetch_ab_test(test_id="t1") == AB_TEST
    assert await store.list_ab_tests(config="hex8_2p") == [AB_TEST]
    assert await store.fetch_ab_test(test_id="t9") is None


async def test_ab_games_and_tallies(store: HistoryStore) -> None:
    games = [
        game(0, 0, "m1", GameResult.WIN),
        game(0, 1, "m1", GameResult.LOSS),
        game(1, 0, "m1", GameResult.WIN),
        game(1, 1, "heuristic", GameResult.DRAW),
        game(1, 2, "heuristic", GameResult.WIN),
    ]
    await store.record_many([AB_TEST, *games])
    # A retried shard reports its games again: they are not counted twice.
    await store.record_many(games[:2])
    assert await store.list_ab_test_games(test_id="t1") == games
    tallies = await store.list_ab_test_tallies(test_id="t1")
    assert tallies == [
        AbTestTally("heuristic", wins=1, losses=0, draws=1),
        AbTestTally("m1", wins=2, losses=1, draws=0),
    ]
    assert [t.games for t in tallies] == [2, 3]


async def test_games_in_the_same_batch_as_their_test(store: HistoryStore) -> None:
    # Given out of order on purpose: the store writes the test before its games.
    await store.record_many([game(0, 0, "m1", GameResult.WIN), AB_TEST])
    assert len(await store.list_ab_test_games(test_id="t1")) == 1


async def test_game_of_unknown_test_is_refused(store: HistoryStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.record(game(0, 0, "m1", GameResult.WIN))


async def test_models_registry_and_promotion(store: HistoryStore) -> None:
    await store.record_many([model("m1", 1), model("m2", 2), model("s1", 1, config="square8_2p")])
    assert await store.fetch_promoted_model(config="hex8_2p") is None

    first = await store.promote_model(model_id="m1", now=10.0)
    assert (first.promoted, first.promoted_at) == (True, 10.0)
    second = await store.promote_model(model_id="m2", now=20.0)
    assert await store.fetch_promoted_model(config="hex8_2p") == second
    # Demoted, but it remembers when it was promoted.
    assert await store.fetch_model(model_id="m1") == replace(model("m1", 1), promoted_at=10.0)
    # Another config is untouched; promoting again keeps the original time.
    assert await store.fetch_promoted_model(config="square8_2p") is None
    again = await store.promote_model(model_id="m2", now=30.0)
    assert again.promoted_at == 20.0
    assert [m.model_id for m in await store.list_models(config="hex8_2p")] == ["m1", "m2"]


async def test_saving_a_model_keeps_its_promotion(store: HistoryStore) -> None:
    await store.record(model("m1", 1))
    await store.promote_model(model_id="m1", now=10.0)
    await store.record(model("m1", 1))  # re-registering, e.g. after a reconcile
    promoted = await store.fetch_promoted_model(config="hex8_2p")
    assert promoted is not None
    assert promoted.model_id == "m1"


async def test_promoting_an_unknown_model(store: HistoryStore) -> None:
    with pytest.raises(LookupError, match="m404"):
        await store.promote_model(model_id="m404", now=1.0)


async def test_writing_a_promoted_record_is_refused(store: HistoryStore) -> None:
    promoted = ModelRecord("m1", "hex8_2p", 1, "u", "s", 1.0, promoted=True, promoted_at=1.0)
    with pytest.raises(ValueError, match="promote_model"):
        await store.record(promoted)
    with pytest.raises(ValueError, match="promote_model"):
        store.enqueue(promoted)


async def test_metrics_filter_and_prune(store: HistoryStore) -> None:
    samples = [
        MetricSample("gpu_util", 0.5, at=1.0, labels={"node": "a", "gpu": "0"}),
        MetricSample("gpu_util", 0.7, at=2.0, labels={"node": "b", "gpu": "0"}),
        MetricSample("gpu_util", 0.9, at=3.0, labels={"node": "a", "gpu": "1"}),
        MetricSample("queue_depth", 4.0, at=2.0),
    ]
    await store.record_many(samples)
    assert await store.list_metrics(name="gpu_util", since=0.0) == samples[:3]
    assert await store.list_metrics(name="gpu_util", since=0.0, labels={"node": "a"}) == [
        samples[0],
        samples[2],
    ]
    assert await store.list_metrics(name="gpu_util", since=2.0, until=3.0) == [samples[1]]
    assert await store.prune_metrics(before=2.5) == 3
    assert await store.list_metrics(name="gpu_util", since=0.0) == [samples[2]]
    assert await store.list_metrics(name="queue_depth", since=0.0) == []


async def test_training_hashes_last_n(store: HistoryStore) -> None:
    await store.record_many(
        [TrainingHash(f"h{i}", "hex8_2p" if i % 2 else "sq8", float(i)) for i in range(6)]
    )
    await store.record(TrainingHash("h0", "hex8_2p", 99.0))  # seen before: the first stays
    assert await store.fetch_training_hash(digest="h0") == TrainingHash("h0", "sq8", 0.0)
    assert await store.fetch_training_hash(digest="nope") is None
    last = await store.list_training_hashes(limit=3)
    assert [h.digest for h in last] == ["h5", "h4", "h3"]
    of_config = await store.list_training_hashes(limit=2, config="hex8_2p")
    assert [h.digest for h in of_config] == ["h5", "h3"]


# -- batches and the queue ---------------------------------------------------------------------


async def test_big_mixed_batch_lands(store: HistoryStore) -> None:
    rows: list[HistoryRow] = [MetricSample("m", float(i), at=float(i)) for i in range(5000)]
    rows += [NodeEvent("gpu-a", FAIL, at=float(i)) for i in range(100)]
    assert await store.record_many(rows) == 5100
    assert len(await store.list_metrics(name="m", since=0.0)) == 5000
    assert await store.fetch_failure_counts(since=0.0) == {"gpu-a": 100}


async def test_failing_row_rolls_back_the_whole_batch(store: HistoryStore) -> None:
    rows: list[HistoryRow] = [MetricSample("m", float(i), at=float(i)) for i in range(1000)]
    rows.append(game(0, 0, "m1", GameResult.WIN))  # its test does not exist
    rows.append(EpochRecord(1, "op", 1.0))
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_many(rows)
    assert await store.list_metrics(name="m", since=0.0) == []
    assert await store.fetch_latest_epoch() is None
    # The store is still usable afterwards.
    await store.record(EpochRecord(1, "op", 1.0))
    assert await store.fetch_latest_epoch() == EpochRecord(1, "op", 1.0)


async def test_unknown_row_type_is_refused(store: HistoryStore) -> None:
    with pytest.raises(TypeError, match="str"):
        await store.record_many(["not a row"])  # type: ignore[list-item]


async def test_empty_batch(store: HistoryStore) -> None:
    assert await store.record_many([]) == 0
    assert await store.flush() == 0


async def test_enqueue_then_flush(store: HistoryStore) -> None:
    assert store.enqueue(NodeEvent("a", FAIL, at=1.0)) == 1
    assert store.enqueue(NodeEvent("a", FAIL, at=2.0), NodeEvent("b", OK, at=2.0)) == 3
    assert await store.fetch_failure_counts(since=0.0) == {}  # nothing written yet
    assert await store.flush() == 3
    assert store.pending == 0
    assert await store.fetch_failure_counts(since=0.0) == {"a": 2}


async def test_flush_drops_a_batch_that_cannot_be_written(store: HistoryStore) -> None:
    store.enqueue(game(0, 0, "m1", GameResult.WIN))
    with pytest.raises(sqlite3.IntegrityError):
        await store.flush()
    assert store.pending == 0


# -- busy database -----------------------------------------------------------------------------


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """A second connection that holds the database's write lock until it commits."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_locked_write_succeeds_once_released(
    store: HistoryStore, db_path: Path, sleep: FakeSleep
) -> None:
    other = hold_write_lock(db_path)

    def release_on_second_sleep(n: int) -> None:
        if n == 2:
            other.execute("COMMIT")

    sleep.on_sleep = release_on_second_sleep
    try:
        await store.save_state(key="k", value="v", now=1.0)
    finally:
        other.close()
    assert sleep.delays == [0.1, 0.2]
    assert await store.load_state(key="k") == StateEntry("k", "v", 1.0)


async def test_locked_write_gives_up_clearly(
    store: HistoryStore, db_path: Path, sleep: FakeSleep
) -> None:
    other = hold_write_lock(db_path)
    try:
        with pytest.raises(HistoryBusyError, match=r"still locked .* after 5 attempts"):
            await store.save_state(key="k", value="v", now=1.0)
    finally:
        other.close()
    assert sleep.delays == [0.1, 0.2, 0.4, 0.8]
    assert await store.load_state(key="k") is None


async def test_reads_are_not_blocked_by_a_writer(
    store: HistoryStore, db_path: Path, sleep: FakeSleep
) -> None:
    await store.save_state(key="k", value="v", now=1.0)
    other = hold_write_lock(db_path)
    try:
        assert await store.load_state(key="k") == StateEntry("k", "v", 1.0)
    finally:
        other.close()
    assert sleep.delays == []


async def test_busy_flush_keeps_rows_queued(
    store: HistoryStore, db_path: Path, sleep: FakeSleep
) -> None:
    store.enqueue(NodeEvent("a", FAIL, at=1.0))
    other = hold_write_lock(db_path)
    with pytest.raises(HistoryBusyError):
        await store.flush()
    assert store.pending == 1
    other.execute("COMMIT")
    other.close()
    assert await store.flush() == 1
    assert await store.fetch_failure_counts(since=0.0) == {"a": 1}


async def test_other_operational_errors_are_not_retried(
    store: HistoryStore, db_path: Path, sleep: FakeSleep
) -> None:
    with sqlite3.connect(db_path) as other:
        other.execute("DROP TABLE state")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await store.save_state(key="k", value="v", now=1.0)
    assert sleep.delays == []
