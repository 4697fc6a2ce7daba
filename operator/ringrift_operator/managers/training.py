"""The TrainingCoordinator's decisions: is a config ready to train, where, is it a duplicate, did
the new model pass its gauntlet, and what a TrainingRun does next.

Pure functions over plain snapshots, called by the TrainingRun reconciler and the readiness
autopilot loop, which own every read and write. In order of a run's life:

1. :func:`decide_data_readiness` — enough new games since the config's last training?
2. :func:`cooldown_remaining_seconds` — 300 s between trainings of one config.
3. :func:`build_data_hash`, :func:`build_job_hash`, :class:`RecentHashes` — skip data already
   trained on (the last 100 job hashes).
4. :func:`decide_training_node` — the best-ranked node with GPUs and memory, preferring data
   locality among near-equals.
5. :func:`plan_gauntlet_shards`, :func:`score_gauntlet`, :func:`decide_promotion`.
6. :func:`decide_training_step` — the run's next step from all of the above.

Condition reasons are the :class:`Reason` values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

from ringrift_operator.api.common import Board, parse_config_key
from ringrift_operator.managers.elo import estimate_elo_difference
from ringrift_operator.managers.nodes import GIB

DEFAULT_COOLDOWN_SECONDS = 300
MIN_MEMORY_GB_FOR_TASKS = 8  # GiB of allocatable memory a training node needs
DEDUPE_HISTORY = 100  # job hashes remembered
LOCALITY_POWER_TOLERANCE = Fraction(10, 100)  # see decide_training_node
DEFAULT_MAX_ATTEMPTS = 3  # per step: the first try and two retries
DEFAULT_GAUNTLET_GAMES = 100
DEFAULT_MIN_GAUNTLET_GAMES = 50
DEFAULT_PROMOTION_WIN_RATE_PERCENT = 55

# New games needed before a config trains again. Large boards yield many more positions per game
# and take far longer to play, so they need fewer games.
DEFAULT_MIN_NEW_GAMES_BY_BOARD: Mapping[Board, int] = MappingProxyType(
    {Board.SQUARE8: 500, Board.HEX8: 500, Board.SQUARE19: 200, Board.HEXAGONAL: 200}
)


class Reason(StrEnum):
    """Condition reasons of a TrainingRun (and the reasons of every decision here)."""

    ENOUGH_NEW_DATA = "EnoughNewData"
    INSUFFICIENT_DATA = "InsufficientData"
    COOLING_DOWN = "CoolingDown"
    DUPLICATE_DATA = "DuplicateData"
    NO_CAPACITY = "NoCapacity"
    BEST_POWER_SCORE = "BestPowerScore"
    DATA_LOCALITY = "DataLocality"
    EXPORTING = "Exporting"
    EXPORTED = "Exported"
    TRAINING = "Training"
    TRAINED = "Trained"
    EVALUATING = "Evaluating"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    RETRYING = "RetryingAfterFailure"
    EXPORT_FAILED = "ExportFailed"
    TRAINING_FAILED = "TrainingFailed"
    EVALUATION_FAILED = "EvaluationFailed"
    PROMOTION_FAILED = "PromotionFailed"
    WIN_RATE_MET = "WinRateMet"
    WIN_RATE_BELOW_THRESHOLD = "WinRateBelowThreshold"
    TOO_FEW_GAMES = "TooFewGames"
    AUTO_PROMOTE_DISABLED = "AutoPromoteDisabled"


# --- Readiness -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataInventory:
    """Games per config per node, from the node agents' manifests.

    ``games_by_node`` counts what each node holds, synced copies included (data locality).
    ``distinct_games`` counts each game once per config across the cluster; when ``None`` the
    total is the sum over nodes, which is right only while no copies exist.
    """

    games_by_node: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    distinct_games: Mapping[str, int] | None = None

    def total_games(self, config: str) -> int:
        if self.distinct_games is not None:
            return self.distinct_games.get(config, 0)
        return sum(games.get(config, 0) for games in self.games_by_node.values())

    def games_on(self, node: str, config: str) -> int:
        return self.games_by_node.get(node, {}).get(config, 0)


def default_min_new_games(config: str) -> int:
    """The new-game threshold of ``config`` when its TrainingRun sets none (by board size)."""
    board, _ = parse_config_key(config)
    return DEFAULT_MIN_NEW_GAMES_BY_BOARD[board]


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether ``config`` has enough new games to train, with the numbers behind the answer."""

    config: str
    ready: bool
    reason: Reason
    message: str
    total_games: int
    games_at_last_training: int
    new_games: int
    min_new_games: int


def decide_data_readiness(
    *,
    config: str,
    inventory: DataInventory,
    games_at_last_training: int = 0,
    min_new_games: int | None = None,
) -> Readiness:
    """Ready when ``total now - total at the last training >= min_new_games``.

    ``min_new_games`` defaults by board (:func:`default_min_new_games`). A total below the
    baseline (data pruned) counts as no new games; whoever prunes resets the baseline.
    """
    threshold = default_min_new_games(config) if min_new_games is None else min_new_games
    total = inventory.total_games(config)
    new = max(0, total - games_at_last_training)
    ready = new >= threshold
    return Readiness(
        config=config,
        ready=ready,
        reason=Reason.ENOUGH_NEW_DATA if ready else Reason.INSUFFICIENT_DATA,
        message=f"{new} new games of {config} since the last training, {threshold} needed",
        total_games=total,
        games_at_last_training=games_at_last_training,
        new_games=new,
        min_new_games=threshold,
    )


def cooldown_remaining_seconds(
    *, last_started_at: float | None, now: float, cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
) -> float:
    """Seconds until the config may train again (0 = now). Measured from the last training's
    start; a clock that went backwards never extends the wait beyond one cooldown."""
    if last_started_at is None:
        return 0.0
    remaining = last_started_at + cooldown_seconds - now
    return max(0.0, min(float(cooldown_seconds), remaining))


def is_cooling_down(
    *, last_started_at: float | None, now: float, cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
) -> bool:
    remaining = cooldown_remaining_seconds(
        last_started_at=last_started_at, now=now, cooldown_seconds=cooldown_seconds
    )
    return remaining > 0


# --- Dedupe --------------------------------------------------------------------------------------


def build_data_hash(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted set of ``(file path, file sha256)`` of a config's game files.

    Order and repeats do not matter, so copies of one file on several nodes hash as one.
    """
    digest = hashlib.sha256()
    for path, sha in sorted(set(files)):
        digest.update(f"{path}\t{sha}\n".encode())
    return digest.hexdigest()


def build_job_hash(*, config: str, data_hash: str) -> str:
    """The seed's dedupe key: ``sha256(f"{config}:{data_hash}")[:16]``."""
    return hashlib.sha256(f"{config}:{data_hash}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RecentHashes:
    """The job hashes of the last ``capacity`` trainings, oldest first."""

    hashes: tuple[str, ...] = ()
    capacity: int = DEDUPE_HISTORY

    def __contains__(self, job_hash: object) -> bool:
        return job_hash in self.hashes


def remember_hash(recent: RecentHashes, job_hash: str) -> RecentHashes:
    """Fold ``job_hash`` in as the newest entry (moved there if known), dropping the oldest."""
    kept = tuple(h for h in recent.hashes if h != job_hash)
    hashes = (*kept, job_hash)[-recent.capacity :]
    return RecentHashes(hashes=hashes, capacity=recent.capacity)


# --- Node choice ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainingCandidate:
    """A node that could train, as ranked by the node ranking (best first)."""

    node_name: str
    power_score: float
    free_gpus: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class NodeChoice:
    node_name: str | None
    reason: Reason
    message: str
    data_local: bool = False


def decide_training_node(
    candidates: Sequence[TrainingCandidate],
    *,
    config: str,
    inventory: DataInventory,
    gpus: int = 1,
    min_memory_gib: int = MIN_MEMORY_GB_FOR_TASKS,
    locality_tolerance: Fraction = LOCALITY_POWER_TOLERANCE,
) -> NodeChoice:
    """The node to train ``config`` on.

    Eligible: at least ``gpus`` free GPUs and ``min_memory_gib`` GiB of memory. Among the eligible
    nodes whose power score is within ``locality_tolerance`` (10 %) of the best, the one holding
    the most games of ``config`` wins — it saves a transfer for a small loss of speed. When none
    of those holds any, the most powerful wins. Ties keep the candidates' ranking order.
    """
    min_bytes = min_memory_gib * GIB
    eligible = [c for c in candidates if c.free_gpus >= gpus and c.memory_bytes >= min_bytes]
    if not eligible:
        return NodeChoice(
            node_name=None,
            reason=Reason.NO_CAPACITY,
            message=(
                f"none of {len(candidates)} candidates has {gpus} free GPU(s) "
                f"and {min_memory_gib} GiB of memory"
            ),
        )
    best = max(eligible, key=lambda c: c.power_score)  # first of equals: ranking order
    floor = Fraction(best.power_score) * (1 - locality_tolerance)
    near_best = [c for c in eligible if Fraction(c.power_score) >= floor]
    local = max(near_best, key=lambda c: inventory.games_on(c.node_name, config))
    games = inventory.games_on(local.node_name, config)
    if games > 0:
        return NodeChoice(
            node_name=local.node_name,
            reason=Reason.DATA_LOCALITY,
            message=f"{local.node_name} holds {games} games of {config}",
            data_local=True,
        )
    return NodeChoice(
        node_name=best.node_name,
        reason=Reason.BEST_POWER_SCORE,
        message=f"{best.node_name} has the best power score ({best.power_score:g})",
        data_local=False,
    )


# --- Gauntlet ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GauntletShard:
    """The games one evaluation pod plays: ``games`` of them, numbered from ``first_game``."""

    index: int
    games: int
    first_game: int


def plan_gauntlet_shards(*, games: int, pods: int) -> tuple[GauntletShard, ...]:
    """Split ``games`` over at most ``pods`` pods: sizes differ by at most one, larger shards
    first, no empty shards (fewer games than pods gives fewer shards)."""
    if games < 0 or pods < 1:
        raise ValueError(f"need games >= 0 and pods >= 1, got games={games}, pods={pods}")
    count = min(games, pods)
    if count == 0:
        return ()
    size, extra = divmod(games, count)
    shards = []
    first = 0
    for index in range(count):
        n = size + (1 if index < extra else 0)
        shards.append(GauntletShard(index=index, games=n, first_game=first))
        first += n
    return tuple(shards)


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What one evaluation pod reports for the candidate model."""

    wins: int
    losses: int
    draws: int


@dataclass(frozen=True, slots=True)
class GauntletScore:
    """The candidate's result over all shards. Draws count half.

    ``score`` is the exact mean score; ``win_rate_percent`` is it in percent rounded down, so that
    ``win_rate_percent >= T`` exactly when ``score >= T/100`` for an integer threshold ``T``.
    Elo values are from :func:`~ringrift_operator.managers.elo.estimate_elo_difference`.
    """

    wins: int
    losses: int
    draws: int
    score: Fraction
    win_rate_percent: int
    elo_diff: float
    elo_low: float
    elo_high: float

    @property
    def games(self) -> int:
        return self.wins + self.losses + self.draws


def score_gauntlet(results: Iterable[ShardResult]) -> GauntletScore:
    """Sum the shards' results and score them; no games scores 0 with Elo 0."""
    results = list(results)
    if any(min(r.wins, r.losses, r.draws) < 0 for r in results):
        raise ValueError("shard results must be non-negative")
    wins = sum(r.wins for r in results)
    losses = sum(r.losses for r in results)
    draws = sum(r.draws for r in results)
    games = wins + losses + draws
    score = Fraction(2 * wins + draws, 2 * games) if games else Fraction(0)
    elo = estimate_elo_difference(wins=wins, losses=losses, draws=draws)
    return GauntletScore(
        wins=wins,
        losses=losses,
        draws=draws,
        score=score,
        win_rate_percent=int(score * 100),  # floor: score >= 0
        elo_diff=elo.diff,
        elo_low=elo.low,
        elo_high=elo.high,
    )


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    """A TrainingRun's ``gauntlet.promotionWinRatePercent``, minimum games and ``autoPromote``."""

    win_rate_percent: int = DEFAULT_PROMOTION_WIN_RATE_PERCENT
    min_games: int = DEFAULT_MIN_GAUNTLET_GAMES
    auto_promote: bool = True


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """``passed``: the gauntlet is won (condition GauntletPassed); ``promote``: act on it."""

    passed: bool
    promote: bool
    reason: Reason
    message: str


def decide_promotion(*, score: GauntletScore, policy: PromotionPolicy) -> PromotionDecision:
    """Passed when at least ``min_games`` were played and the exact score reaches the win-rate
    threshold; promoted when passed and ``auto_promote`` is set."""
    if score.games < policy.min_games:
        return PromotionDecision(
            passed=False,
            promote=False,
            reason=Reason.TOO_FEW_GAMES,
            message=f"{score.games} gauntlet games played, {policy.min_games} needed",
        )
    summary = f"win rate {score.win_rate_percent}% ({score.score}), {policy.win_rate_percent}%"
    if score.score < Fraction(policy.win_rate_percent, 100):
        return PromotionDecision(
            passed=False,
            promote=False,
            reason=Reason.WIN_RATE_BELOW_THRESHOLD,
            message=f"{summary} needed",
        )
    if not policy.auto_promote:
        return PromotionDecision(
            passed=True,
            promote=False,
            reason=Reason.AUTO_PROMOTE_DISABLED,
            message=f"{summary} needed; autoPromote is off",
        )
    return PromotionDecision(
        passed=True, promote=True, reason=Reason.WIN_RATE_MET, message=f"{summary} needed"
    )


# --- TrainingRun steps ---------------------------------------------------------------------------


class StepState(StrEnum):
    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class StepStatus:
    """One step of a run (export, train, evaluate, promote): its state and attempts so far."""

    state: StepState = StepState.NOT_STARTED
    attempts: int = 0


class RunAction(StrEnum):
    """What the reconciler does next for a TrainingRun."""

    WAIT = "Wait"  # Pending (gates) or a step in progress; the reason says which
    EXPORT = "Export"
    TRAIN = "Train"
    EVALUATE = "Evaluate"
    PROMOTE = "Promote"
    COMPLETE = "Complete"  # evaluated, not promoted
    PROMOTED = "Promoted"
    FAIL = "Fail"  # a step failed and its retries are exhausted
    SKIP = "Skip"  # the data was trained on already

    @property
    def is_terminal(self) -> bool:
        return self in {RunAction.COMPLETE, RunAction.PROMOTED, RunAction.FAIL, RunAction.SKIP}


@dataclass(frozen=True, slots=True)
class RunDecision:
    action: RunAction
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class TrainingSnapshot:
    """Everything :func:`decide_training_step` needs about one TrainingRun and its config.

    The gates (readiness, duplicate, cooldown, node) apply until the export has started; after
    that the run finishes on what it started with. ``job_hash`` is the hash of the data the run
    would train on; the reconciler remembers it in ``recent_hashes`` when the export starts.
    """

    readiness: Readiness
    job_hash: str
    recent_hashes: RecentHashes
    last_training_started_at: float | None
    node: NodeChoice
    cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
    export: StepStatus = StepStatus()
    train: StepStatus = StepStatus()
    evaluate: StepStatus = StepStatus()
    promote: StepStatus = StepStatus()
    gauntlet: GauntletScore | None = None
    policy: PromotionPolicy = PromotionPolicy()
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if self.evaluate.state is StepState.SUCCEEDED and self.gauntlet is None:
            raise ValueError("a succeeded evaluation needs its gauntlet score")


_STEP_REASONS: Mapping[RunAction, tuple[Reason, Reason]] = MappingProxyType(
    {  # running, failed for good
        RunAction.EXPORT: (Reason.EXPORTING, Reason.EXPORT_FAILED),
        RunAction.TRAIN: (Reason.TRAINING, Reason.TRAINING_FAILED),
        RunAction.EVALUATE: (Reason.EVALUATING, Reason.EVALUATION_FAILED),
        RunAction.PROMOTE: (Reason.PROMOTING, Reason.PROMOTION_FAILED),
    }
)


def _decide_gates(snapshot: TrainingSnapshot, *, now: float) -> RunDecision | None:
    readiness = snapshot.readiness
    if not readiness.ready:
        return RunDecision(RunAction.WAIT, Reason.INSUFFICIENT_DATA, readiness.message)
    if snapshot.job_hash in snapshot.recent_hashes:
        message = f"job hash {snapshot.job_hash} of {readiness.config} was trained on already"
        return RunDecision(RunAction.SKIP, Reason.DUPLICATE_DATA, message)
    remaining = cooldown_remaining_seconds(
        last_started_at=snapshot.last_training_started_at,
        now=now,
        cooldown_seconds=snapshot.cooldown_seconds,
    )
    if remaining > 0:
        message = f"{readiness.config} trained recently; {remaining:.0f}s of cooldown left"
        return RunDecision(RunAction.WAIT, Reason.COOLING_DOWN, message)
    if snapshot.node.node_name is None:
        return RunDecision(RunAction.WAIT, Reason.NO_CAPACITY, snapshot.node.message)
    return None


def _decide_step(
    action: RunAction, step: StepStatus, *, max_attempts: int, start: RunDecision
) -> RunDecision | None:
    """The decision for one step, or None when it succeeded and the run moves on."""
    running, failed = _STEP_REASONS[action]
    if step.state is StepState.NOT_STARTED:
        return start
    if step.state is StepState.RUNNING:
        return RunDecision(RunAction.WAIT, running, f"{action.value} step running")
    if step.state is StepState.FAILED:
        if step.attempts < max_attempts:
            if start.action is RunAction.WAIT:  # e.g. no node to retry the training on
                return start
            message = f"{action.value} attempt {step.attempts} of {max_attempts} failed; retrying"
            return RunDecision(action, Reason.RETRYING, message)
        message = f"{action.value} failed {step.attempts} time(s); no retries left"
        return RunDecision(RunAction.FAIL, failed, message)
    return None


def decide_training_step(snapshot: TrainingSnapshot, *, now: float) -> RunDecision:
    """The next step of a TrainingRun.

    Before the export starts: wait for data (InsufficientData), skip data already trained on
    (DuplicateData), wait out the cooldown (CoolingDown) and for a node (NoCapacity), in that
    order, then Export. Then Export → Train (waits again for a node) → Evaluate → Promote when
    the gauntlet decides so, else Complete. A failed step is retried up to ``max_attempts``
    attempts in all, then the run fails.
    """
    if snapshot.export.state is StepState.NOT_STARTED:
        gate = _decide_gates(snapshot, now=now)
        if gate is not None:
            return gate
    ready = snapshot.readiness
    steps: tuple[tuple[RunAction, StepStatus, RunDecision], ...] = (
        (
            RunAction.EXPORT,
            snapshot.export,
            RunDecision(RunAction.EXPORT, Reason.ENOUGH_NEW_DATA, ready.message),
        ),
        (
            RunAction.TRAIN,
            snapshot.train,
            _start_training(snapshot.node),
        ),
        (
            RunAction.EVALUATE,
            snapshot.evaluate,
            RunDecision(RunAction.EVALUATE, Reason.TRAINED, "model trained; running the gauntlet"),
        ),
    )
    for action, step, start in steps:
        decision = _decide_step(action, step, max_attempts=snapshot.max_attempts, start=start)
        if decision is not None:
            return decision
    assert snapshot.gauntlet is not None  # guaranteed by TrainingSnapshot.__post_init__
    promotion = decide_promotion(score=snapshot.gauntlet, policy=snapshot.policy)
    if not promotion.promote:
        return RunDecision(RunAction.COMPLETE, promotion.reason, promotion.message)
    start = RunDecision(RunAction.PROMOTE, promotion.reason, promotion.message)
    decision = _decide_step(
        RunAction.PROMOTE, snapshot.promote, max_attempts=snapshot.max_attempts, start=start
    )
    if decision is not None:
        return decision
    return RunDecision(RunAction.PROMOTED, Reason.PROMOTED, promotion.message)


def _start_training(node: NodeChoice) -> RunDecision:
    if node.node_name is None:
        return RunDecision(RunAction.WAIT, Reason.NO_CAPACITY, node.message)
    return RunDecision(RunAction.TRAIN, Reason.EXPORTED, f"training on {node.node_name}")
