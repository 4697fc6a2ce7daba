"""TrainingCoordinator: readiness, cooldown, dedupe, node choice, gauntlet, promotion, run steps."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.api.common import ALL_CONFIG_KEYS, Board, parse_config_key
from ringrift_operator.managers.nodes import GIB
from ringrift_operator.managers.training import (
    DEDUPE_HISTORY,
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_MIN_NEW_GAMES_BY_BOARD,
    MIN_MEMORY_GB_FOR_TASKS,
    DataInventory,
    GauntletScore,
    GauntletShard,
    NodeChoice,
    PromotionPolicy,
    Readiness,
    Reason,
    RecentHashes,
    RunAction,
    ShardResult,
    StepState,
    StepStatus,
    TrainingCandidate,
    TrainingSnapshot,
    build_data_hash,
    build_job_hash,
    cooldown_remaining_seconds,
    decide_data_readiness,
    decide_promotion,
    decide_training_node,
    decide_training_step,
    default_min_new_games,
    is_cooling_down,
    plan_gauntlet_shards,
    remember_hash,
    score_gauntlet,
)

CONFIG = "square8_2p"


def inventory(**games_by_node: int) -> DataInventory:
    """Games of CONFIG per node, e.g. ``inventory(gpu_1=300, gpu_2=100)``."""
    return DataInventory(
        games_by_node={node.replace("_", "-"): {CONFIG: n} for node, n in games_by_node.items()}
    )


def candidate(
    name: str, power: float, *, free_gpus: int = 1, memory_gib: int = 64
) -> TrainingCandidate:
    return TrainingCandidate(
        node_name=name, power_score=power, free_gpus=free_gpus, memory_bytes=memory_gib * GIB
    )


def score(wins: int, losses: int = 0, draws: int = 0) -> GauntletScore:
    return score_gauntlet([ShardResult(wins=wins, losses=losses, draws=draws)])


# --- Readiness -----------------------------------------------------------------------------------


class TestDataReadiness:
    @pytest.mark.parametrize(
        ("data", "baseline", "minimum", "ready", "new"),
        [
            pytest.param(DataInventory(), 0, 100, False, 0, id="no-data"),
            pytest.param(inventory(gpu_1=100), 0, 100, True, 100, id="exactly-threshold"),
            pytest.param(inventory(gpu_1=99), 0, 100, False, 99, id="one-short"),
            pytest.param(inventory(gpu_1=60, gpu_2=40), 0, 100, True, 100, id="sums-over-nodes"),
            pytest.param(inventory(gpu_1=250), 200, 100, False, 50, id="baseline-subtracted"),
            pytest.param(inventory(gpu_1=300), 200, 100, True, 100, id="enough-since-baseline"),
            pytest.param(inventory(gpu_1=50), 200, 10, False, 0, id="pruned-below-baseline"),
            pytest.param(
                DataInventory(
                    games_by_node={"a": {CONFIG: 100}, "b": {CONFIG: 100}},
                    distinct_games={CONFIG: 100},
                ),
                0,
                150,
                False,
                100,
                id="distinct-count-ignores-copies",
            ),
            pytest.param(
                DataInventory(games_by_node={"a": {"hex8_2p": 1000}}),
                0,
                1,
                False,
                0,
                id="other-configs-ignored",
            ),
        ],
    )
    def test_readiness(
        self, data: DataInventory, baseline: int, minimum: int, ready: bool, new: int
    ) -> None:
        readiness = decide_data_readiness(
            config=CONFIG, inventory=data, games_at_last_training=baseline, min_new_games=minimum
        )
        assert (readiness.ready, readiness.new_games) == (ready, new)
        expected = Reason.ENOUGH_NEW_DATA if ready else Reason.INSUFFICIENT_DATA
        assert readiness.reason == expected
        assert f"{minimum} needed" in readiness.message

    @pytest.mark.parametrize("config", ALL_CONFIG_KEYS)
    def test_default_threshold_by_board(self, config: str) -> None:
        board, _ = parse_config_key(config)
        readiness = decide_data_readiness(config=config, inventory=DataInventory())
        assert readiness.min_new_games == default_min_new_games(config)
        assert readiness.min_new_games == DEFAULT_MIN_NEW_GAMES_BY_BOARD[board] > 0

    def test_large_boards_need_fewer_games(self) -> None:
        small = DEFAULT_MIN_NEW_GAMES_BY_BOARD[Board.SQUARE8]
        assert DEFAULT_MIN_NEW_GAMES_BY_BOARD[Board.SQUARE19] < small
        assert DEFAULT_MIN_NEW_GAMES_BY_BOARD[Board.HEXAGONAL] < small


class TestCooldown:
    @pytest.mark.parametrize(
        ("last", "now", "cooldown", "remaining"),
        [
            pytest.param(None, 1000.0, 300, 0.0, id="never-trained"),
            pytest.param(1000.0, 1100.0, 300, 200.0, id="100s-after"),
            pytest.param(1000.0, 1300.0, 300, 0.0, id="exactly-over"),
            pytest.param(1000.0, 5000.0, 300, 0.0, id="long-over"),
            pytest.param(1000.0, 900.0, 300, 300.0, id="clock-backwards-capped"),
            pytest.param(1000.0, 1030.0, 60, 30.0, id="custom-cooldown"),
            pytest.param(1000.0, 1000.0, 0, 0.0, id="no-cooldown"),
        ],
    )
    def test_remaining(
        self, last: float | None, now: float, cooldown: int, remaining: float
    ) -> None:
        got = cooldown_remaining_seconds(last_started_at=last, now=now, cooldown_seconds=cooldown)
        assert got == remaining
        assert is_cooling_down(last_started_at=last, now=now, cooldown_seconds=cooldown) is (
            remaining > 0
        )

    def test_default_is_five_minutes(self) -> None:
        assert DEFAULT_COOLDOWN_SECONDS == 300
        assert is_cooling_down(last_started_at=0.0, now=299.0)
        assert not is_cooling_down(last_started_at=0.0, now=300.0)


# --- Dedupe --------------------------------------------------------------------------------------


class TestHashes:
    def test_job_hash_is_the_seeds_formula(self) -> None:
        expected = hashlib.sha256(b"square8_2p:abc").hexdigest()[:16]
        assert build_job_hash(config=CONFIG, data_hash="abc") == expected

    def test_job_hash_depends_on_config(self) -> None:
        assert build_job_hash(config="hex8_2p", data_hash="abc") != build_job_hash(
            config=CONFIG, data_hash="abc"
        )

    @pytest.mark.parametrize(
        ("left", "right", "equal"),
        [
            pytest.param([("a", "1"), ("b", "2")], [("b", "2"), ("a", "1")], True, id="order"),
            pytest.param([("a", "1")], [("a", "1"), ("a", "1")], True, id="copies-count-once"),
            pytest.param([("a", "1")], [("a", "2")], False, id="content-changed"),
            pytest.param([("a", "1")], [("b", "1")], False, id="path-changed"),
            pytest.param([("a", "1")], [("a", "1"), ("b", "2")], False, id="file-added"),
        ],
    )
    def test_data_hash(
        self, left: list[tuple[str, str]], right: list[tuple[str, str]], equal: bool
    ) -> None:
        assert (build_data_hash(left) == build_data_hash(right)) is equal

    def test_empty_data_hash_is_sha256_of_nothing(self) -> None:
        assert build_data_hash([]) == hashlib.sha256(b"").hexdigest()

    @given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=20), st.randoms())
    def test_data_hash_ignores_order(
        self, files: list[tuple[str, str]], rng: random.Random
    ) -> None:
        shuffled = list(files)
        rng.shuffle(shuffled)
        assert build_data_hash(files) == build_data_hash(shuffled)


class TestRecentHashes:
    def test_remember_then_contains(self) -> None:
        recent = remember_hash(RecentHashes(), "h1")
        assert "h1" in recent
        assert "h2" not in recent

    def test_keeps_the_last_100(self) -> None:
        recent = RecentHashes()
        for i in range(DEDUPE_HISTORY + 5):
            recent = remember_hash(recent, f"h{i}")
        assert len(recent.hashes) == DEDUPE_HISTORY == 100
        assert "h4" not in recent
        assert "h5" in recent
        assert recent.hashes[-1] == "h104"

    def test_remembering_again_makes_it_newest(self) -> None:
        recent = RecentHashes(capacity=3)
        for h in ("a", "b", "c", "a", "d"):
            recent = remember_hash(recent, h)
        assert recent.hashes == ("c", "a", "d")

    def test_fold_leaves_the_input_alone(self) -> None:
        before = RecentHashes(hashes=("a",))
        remember_hash(before, "b")
        assert before.hashes == ("a",)

    @given(st.lists(st.text(min_size=1, max_size=3), max_size=60), st.integers(1, 10))
    def test_bounded_unique_and_newest_last(self, hashes: list[str], capacity: int) -> None:
        recent = RecentHashes(capacity=capacity)
        for h in hashes:
            recent = remember_hash(recent, h)
        assert len(recent.hashes) <= capacity
        assert len(set(recent.hashes)) == len(recent.hashes)
        if hashes:
            assert recent.hashes[-1] == hashes[-1]


# --- Node choice ---------------------------------------------------------------------------------


class TestTrainingNode:
    @pytest.mark.parametrize(
        ("candidates", "data", "kwargs", "node", "reason"),
        [
            pytest.param([], DataInventory(), {}, None, Reason.NO_CAPACITY, id="no-candidates"),
            pytest.param(
                [candidate("a", 100, free_gpus=0)],
                DataInventory(),
                {},
                None,
                Reason.NO_CAPACITY,
                id="no-free-gpu",
            ),
            pytest.param(
                [candidate("a", 100, memory_gib=7), candidate("b", 50, memory_gib=8)],
                DataInventory(),
                {},
                "b",
                Reason.BEST_POWER_SCORE,
                id="under-8gib-excluded-8-ok",
            ),
            pytest.param(
                [candidate("a", 50), candidate("b", 100)],
                DataInventory(),
                {},
                "b",
                Reason.BEST_POWER_SCORE,
                id="best-power-without-data",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 91)],
                inventory(b=10),
                {},
                "b",
                Reason.DATA_LOCALITY,
                id="locality-within-10-percent",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 90)],
                inventory(b=10),
                {},
                "b",
                Reason.DATA_LOCALITY,
                id="locality-at-exactly-10-percent",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 89)],
                inventory(b=10),
                {},
                "a",
                Reason.BEST_POWER_SCORE,
                id="locality-beyond-10-percent-loses",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 95), candidate("c", 95)],
                inventory(a=5, b=10, c=50),
                {},
                "c",
                Reason.DATA_LOCALITY,
                id="most-games-among-near-best",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 100)],
                DataInventory(),
                {},
                "a",
                Reason.BEST_POWER_SCORE,
                id="tie-keeps-ranking-order",
            ),
            pytest.param(
                [candidate("a", 100, free_gpus=1), candidate("b", 60, free_gpus=2)],
                DataInventory(),
                {"gpus": 2},
                "b",
                Reason.BEST_POWER_SCORE,
                id="needs-two-gpus",
            ),
            pytest.param(
                [candidate("a", 100, memory_gib=16), candidate("b", 60, memory_gib=64)],
                DataInventory(),
                {"min_memory_gib": 32},
                "b",
                Reason.BEST_POWER_SCORE,
                id="custom-min-memory",
            ),
            pytest.param(
                [candidate("a", 100), candidate("b", 70)],
                inventory(b=10),
                {"locality_tolerance": Fraction(1, 2)},
                "b",
                Reason.DATA_LOCALITY,
                id="custom-tolerance",
            ),
        ],
    )
    def test_choice(
        self,
        candidates: list[TrainingCandidate],
        data: DataInventory,
        kwargs: dict[str, object],
        node: str | None,
        reason: Reason,
    ) -> None:
        choice = decide_training_node(candidates, config=CONFIG, inventory=data, **kwargs)  # type: ignore[arg-type]
        assert (choice.node_name, choice.reason) == (node, reason)
        assert choice.data_local is (reason == Reason.DATA_LOCALITY)

    def test_default_minimum_memory_is_8_gib(self) -> None:
        assert MIN_MEMORY_GB_FOR_TASKS == 8


# --- Gauntlet ------------------------------------------------------------------------------------


class TestGauntletShards:
    @pytest.mark.parametrize(
        ("games", "pods", "sizes"),
        [
            pytest.param(100, 4, [25, 25, 25, 25], id="even-split"),
            pytest.param(10, 3, [4, 3, 3], id="larger-shards-first"),
            pytest.param(2, 5, [1, 1], id="fewer-games-than-pods"),
            pytest.param(0, 3, [], id="no-games"),
            pytest.param(7, 1, [7], id="one-pod"),
        ],
    )
    def test_sizes(self, games: int, pods: int, sizes: list[int]) -> None:
        assert [s.games for s in plan_gauntlet_shards(games=games, pods=pods)] == sizes

    def test_numbering_is_contiguous(self) -> None:
        assert plan_gauntlet_shards(games=10, pods=3) == (
            GauntletShard(index=0, games=4, first_game=0),
            GauntletShard(index=1, games=3, first_game=4),
            GauntletShard(index=2, games=3, first_game=7),
        )

    @pytest.mark.parametrize(("games", "pods"), [(10, 0), (-1, 2)], ids=["no-pods", "negative"])
    def test_rejects(self, games: int, pods: int) -> None:
        with pytest.raises(ValueError, match="need"):
            plan_gauntlet_shards(games=games, pods=pods)

    @given(st.integers(0, 1000), st.integers(1, 64))
    def test_balanced_and_complete(self, games: int, pods: int) -> None:
        shards = plan_gauntlet_shards(games=games, pods=pods)
        assert sum(s.games for s in shards) == games
        assert len(shards) == min(games, pods)
        if shards:
            assert max(s.games for s in shards) - min(s.games for s in shards) <= 1
            assert min(s.games for s in shards) >= 1
        assert [s.first_game for s in shards] == [
            sum(x.games for x in shards[:i]) for i in range(len(shards))
        ]
        assert plan_gauntlet_shards(games=games, pods=pods) == shards


class TestScoreGauntlet:
    def test_sums_shards(self) -> None:
        result = score_gauntlet([ShardResult(3, 1, 1), ShardResult(2, 2, 1)])
        assert (result.wins, result.losses, result.draws, result.games) == (5, 3, 2, 10)
        assert result.score == Fraction(6, 10)
        assert result.win_rate_percent == 60

    @pytest.mark.parametrize(
        ("wins", "losses", "draws", "fraction", "percent"),
        [
            pytest.param(1, 1, 0, Fraction(1, 2), 50, id="even"),
            pytest.param(0, 0, 4, Fraction(1, 2), 50, id="all-draws-half"),
            pytest.param(2, 1, 0, Fraction(2, 3), 66, id="percent-rounds-down"),
            pytest.param(10, 0, 0, Fraction(1), 100, id="sweep"),
            pytest.param(0, 10, 0, Fraction(0), 0, id="shutout"),
            pytest.param(0, 0, 0, Fraction(0), 0, id="no-games"),
        ],
    )
    def test_win_rate(
        self, wins: int, losses: int, draws: int, fraction: Fraction, percent: int
    ) -> None:
        result = score(wins, losses, draws)
        assert (result.score, result.win_rate_percent) == (fraction, percent)

    def test_no_games_has_zero_elo(self) -> None:
        assert score_gauntlet([]).elo_diff == 0.0

    def test_rejects_negative_counts(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            score_gauntlet([ShardResult(5, 0, 0), ShardResult(-1, 0, 0)])

    @given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 200))
    def test_elo_sign_matches_score_against_half(self, wins: int, losses: int, draws: int) -> None:
        result = score(wins, losses, draws)
        if result.games == 0 or result.score == Fraction(1, 2):
            assert result.elo_diff == pytest.approx(0.0)
        elif result.score > Fraction(1, 2):
            assert result.elo_diff > 0
        else:
            assert result.elo_diff < 0
        assert result.elo_low <= result.elo_diff <= result.elo_high


class TestPromotion:
    @pytest.mark.parametrize(
        ("result", "policy", "passed", "promote", "reason"),
        [
            pytest.param(
                score(40, 0),
                PromotionPolicy(min_games=50),
                False,
                False,
                Reason.TOO_FEW_GAMES,
                id="too-few-games-even-if-winning",
            ),
            pytest.param(
                score(55, 45),
                PromotionPolicy(),
                True,
                True,
                Reason.WIN_RATE_MET,
                id="exactly-55-percent",
            ),
            pytest.param(
                score(54, 46),
                PromotionPolicy(),
                False,
                False,
                Reason.WIN_RATE_BELOW_THRESHOLD,
                id="54-percent-below",
            ),
            pytest.param(
                score(549, 451),
                PromotionPolicy(),
                False,
                False,
                Reason.WIN_RATE_BELOW_THRESHOLD,
                id="54.9-percent-below-no-rounding-up",
            ),
            pytest.param(
                score(50, 40, 10),
                PromotionPolicy(),
                True,
                True,
                Reason.WIN_RATE_MET,
                id="draws-count-half",
            ),
            pytest.param(
                score(80, 20),
                PromotionPolicy(auto_promote=False),
                True,
                False,
                Reason.AUTO_PROMOTE_DISABLED,
                id="passed-but-auto-promote-off",
            ),
            pytest.param(
                score(29, 21),
                PromotionPolicy(win_rate_percent=60, min_games=10),
                False,
                False,
                Reason.WIN_RATE_BELOW_THRESHOLD,
                id="custom-threshold",
            ),
        ],
    )
    def test_decision(
        self,
        result: GauntletScore,
        policy: PromotionPolicy,
        passed: bool,
        promote: bool,
        reason: Reason,
    ) -> None:
        decision = decide_promotion(score=result, policy=policy)
        assert (decision.passed, decision.promote, decision.reason) == (passed, promote, reason)

    @given(
        st.integers(0, 150),
        st.integers(1, 50),
        st.integers(0, 150),
        st.integers(0, 50),
        st.integers(0, 100),
        st.integers(0, 120),
    )
    def test_monotone_in_wins(
        self, wins: int, more: int, losses: int, draws: int, percent: int, min_games: int
    ) -> None:
        policy = PromotionPolicy(win_rate_percent=percent, min_games=min_games)
        fewer = decide_promotion(score=score(wins, losses, draws), policy=policy)
        better = decide_promotion(score=score(wins + more, losses, draws), policy=policy)
        assert better.promote >= fewer.promote
        assert better.passed >= fewer.passed


# --- TrainingRun steps ---------------------------------------------------------------------------

NOW = 10_000.0
READY = Readiness(
    config=CONFIG,
    ready=True,
    reason=Reason.ENOUGH_NEW_DATA,
    message="600 new games",
    total_games=600,
    games_at_last_training=0,
    new_games=600,
    min_new_games=500,
)
NODE = NodeChoice(node_name="gpu-1", reason=Reason.BEST_POWER_SCORE, message="best")
NO_NODE = NodeChoice(node_name=None, reason=Reason.NO_CAPACITY, message="no free GPU")
DONE = StepStatus(StepState.SUCCEEDED, 1)
RUNNING = StepStatus(StepState.RUNNING, 1)


def failed(attempts: int) -> StepStatus:
    return StepStatus(StepState.FAILED, attempts)


def run(**changes: object) -> TrainingSnapshot:
    base = TrainingSnapshot(
        readiness=READY,
        job_hash="hash-1",
        recent_hashes=RecentHashes(hashes=("old",)),
        last_training_started_at=None,
        node=NODE,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


EVALUATED = {"export": DONE, "train": DONE, "evaluate": DONE}


class TestTrainingSteps:
    @pytest.mark.parametrize(
        ("snapshot", "action", "reason"),
        [
            # Gates, before the export starts.
            pytest.param(
                run(readiness=replace(READY, ready=False, reason=Reason.INSUFFICIENT_DATA)),
                RunAction.WAIT,
                Reason.INSUFFICIENT_DATA,
                id="waits-for-data",
            ),
            pytest.param(
                run(recent_hashes=RecentHashes(hashes=("hash-1",))),
                RunAction.SKIP,
                Reason.DUPLICATE_DATA,
                id="duplicate-skipped",
            ),
            pytest.param(
                run(
                    readiness=replace(READY, ready=False),
                    recent_hashes=RecentHashes(hashes=("hash-1",)),
                ),
                RunAction.WAIT,
                Reason.INSUFFICIENT_DATA,
                id="data-checked-before-duplicate",
            ),
            pytest.param(
                run(last_training_started_at=NOW - 100),
                RunAction.WAIT,
                Reason.COOLING_DOWN,
                id="cooling-down",
            ),
            pytest.param(
                run(last_training_started_at=NOW - 300),
                RunAction.EXPORT,
                Reason.ENOUGH_NEW_DATA,
                id="cooldown-over",
            ),
            pytest.param(
                run(last_training_started_at=NOW - 100, cooldown_seconds=60),
                RunAction.EXPORT,
                Reason.ENOUGH_NEW_DATA,
                id="custom-cooldown-over",
            ),
            pytest.param(
                run(node=NO_NODE), RunAction.WAIT, Reason.NO_CAPACITY, id="waits-for-a-node"
            ),
            pytest.param(run(), RunAction.EXPORT, Reason.ENOUGH_NEW_DATA, id="all-clear-exports"),
            # Export.
            pytest.param(
                run(export=RUNNING), RunAction.WAIT, Reason.EXPORTING, id="export-running"
            ),
            pytest.param(
                run(
                    export=RUNNING,
                    recent_hashes=RecentHashes(hashes=("hash-1",)),
                    last_training_started_at=NOW - 1,
                ),
                RunAction.WAIT,
                Reason.EXPORTING,
                id="gates-not-rechecked-once-started",
            ),
            pytest.param(
                run(export=failed(1)), RunAction.EXPORT, Reason.RETRYING, id="export-retried"
            ),
            pytest.param(
                run(export=failed(3)),
                RunAction.FAIL,
                Reason.EXPORT_FAILED,
                id="export-retries-exhausted",
            ),
            pytest.param(
                run(export=failed(1), max_attempts=1),
                RunAction.FAIL,
                Reason.EXPORT_FAILED,
                id="no-retries-configured",
            ),
            # Train.
            pytest.param(run(export=DONE), RunAction.TRAIN, Reason.EXPORTED, id="exported-trains"),
            pytest.param(
                run(export=DONE, node=NO_NODE),
                RunAction.WAIT,
                Reason.NO_CAPACITY,
                id="exported-node-gone-waits",
            ),
            pytest.param(
                run(export=DONE, train=RUNNING),
                RunAction.WAIT,
                Reason.TRAINING,
                id="training-running",
            ),
            pytest.param(
                run(export=DONE, train=failed(2)),
                RunAction.TRAIN,
                Reason.RETRYING,
                id="training-retried",
            ),
            pytest.param(
                run(export=DONE, train=failed(2), node=NO_NODE),
                RunAction.WAIT,
                Reason.NO_CAPACITY,
                id="training-retry-waits-for-node",
            ),
            pytest.param(
                run(export=DONE, train=failed(3)),
                RunAction.FAIL,
                Reason.TRAINING_FAILED,
                id="training-retries-exhausted",
            ),
            # Evaluate.
            pytest.param(
                run(export=DONE, train=DONE),
                RunAction.EVALUATE,
                Reason.TRAINED,
                id="trained-evaluates",
            ),
            pytest.param(
                run(export=DONE, train=DONE, evaluate=RUNNING),
                RunAction.WAIT,
                Reason.EVALUATING,
                id="evaluating",
            ),
            pytest.param(
                run(export=DONE, train=DONE, evaluate=failed(1)),
                RunAction.EVALUATE,
                Reason.RETRYING,
                id="evaluation-retried",
            ),
            pytest.param(
                run(export=DONE, train=DONE, evaluate=failed(3)),
                RunAction.FAIL,
                Reason.EVALUATION_FAILED,
                id="evaluation-retries-exhausted",
            ),
            # Promote or complete.
            pytest.param(
                run(**EVALUATED, gauntlet=score(70, 30)),
                RunAction.PROMOTE,
                Reason.WIN_RATE_MET,
                id="passed-promotes",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(40, 60)),
                RunAction.COMPLETE,
                Reason.WIN_RATE_BELOW_THRESHOLD,
                id="failed-gauntlet-completes",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(10, 0)),
                RunAction.COMPLETE,
                Reason.TOO_FEW_GAMES,
                id="too-few-games-completes",
            ),
            pytest.param(
                run(
                    **EVALUATED, gauntlet=score(70, 30), policy=PromotionPolicy(auto_promote=False)
                ),
                RunAction.COMPLETE,
                Reason.AUTO_PROMOTE_DISABLED,
                id="auto-promote-off-completes",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(70, 30), promote=RUNNING),
                RunAction.WAIT,
                Reason.PROMOTING,
                id="promoting",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(70, 30), promote=failed(1)),
                RunAction.PROMOTE,
                Reason.RETRYING,
                id="promotion-retried",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(70, 30), promote=failed(3)),
                RunAction.FAIL,
                Reason.PROMOTION_FAILED,
                id="promotion-retries-exhausted",
            ),
            pytest.param(
                run(**EVALUATED, gauntlet=score(70, 30), promote=DONE),
                RunAction.PROMOTED,
                Reason.PROMOTED,
                id="promoted",
            ),
        ],
    )
    def test_next_step(self, snapshot: TrainingSnapshot, action: RunAction, reason: Reason) -> None:
        decision = decide_training_step(snapshot, now=NOW)
        assert (decision.action, decision.reason) == (action, reason)
        assert decision.message

    def test_succeeded_evaluation_needs_a_score(self) -> None:
        with pytest.raises(ValueError, match="gauntlet score"):
            run(**EVALUATED)

    @pytest.mark.parametrize(
        ("action", "terminal"),
        [
            pytest.param(RunAction.WAIT, False, id="wait"),
            pytest.param(RunAction.TRAIN, False, id="train"),
            pytest.param(RunAction.COMPLETE, True, id="complete"),
            pytest.param(RunAction.PROMOTED, True, id="promoted"),
            pytest.param(RunAction.FAIL, True, id="fail"),
            pytest.param(RunAction.SKIP, True, id="skip"),
        ],
    )
    def test_terminal_actions(self, action: RunAction, terminal: bool) -> None:
        assert action.is_terminal is terminal

    def test_reasons_are_camel_case(self) -> None:
        for reason in Reason:
            assert reason.value[0].isupper()
            assert reason.value.isalpha()
