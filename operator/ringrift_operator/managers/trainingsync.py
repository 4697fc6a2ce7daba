"""The training-sync decision (the seed's TrainingSyncLoop): which configs get a new TrainingRun.

Called by ``loops.trainingsync`` every tick with one :class:`ConfigTrainingState` per config
it trains (games now, games used by the last finished training, the config's runs); returns the
runs to create. A config gets a run when the TrainingCoordinator's readiness holds
(:func:`~ringrift_operator.managers.training.decide_data_readiness`), its cooldown is over and no
run of it is active. Run names are deterministic (``auto-train-<config>-<n>``, ``n`` one past
the highest ever seen), so a tick interrupted after its create and run again before the watch
shows the run asks for the same name and gets AlreadyExists: never a second run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ringrift_operator.managers.training import (
    DataInventory,
    cooldown_remaining_seconds,
    decide_data_readiness,
)

NAME_PREFIX = "auto-train-"


@dataclass(frozen=True, slots=True)
class ConfigTrainingState:
    """What is known of one config's data and TrainingRuns.

    ``active_runs``: non-terminal runs of the config (in the autopilot's namespace);
    ``last_started_at``: the latest start of any run of it (seconds since the epoch);
    ``highest_index``: the largest ``n`` of the ``auto-train-<config>-<n>`` runs seen.
    """

    config: str
    total_games: int
    games_at_last_training: int
    active_runs: int
    last_started_at: float | None = None
    highest_index: int = 0


@dataclass(frozen=True, slots=True)
class NewTrainingRun:
    config: str
    name: str
    min_new_games: int
    new_games: int


@dataclass(frozen=True, slots=True)
class TrainingSyncVerdict:
    """Why a config gets a run or not (``/status``)."""

    config: str
    create: bool
    reason: str


def training_run_name(config: str, index: int) -> str:
    return f"{NAME_PREFIX}{config.replace('_', '-')}-{index}"


def parse_run_index(name: str, config: str) -> int | None:
    """``n`` of ``auto-train-<config>-<n>``, or None for any other name."""
    prefix = f"{NAME_PREFIX}{config.replace('_', '-')}-"
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def decide_training_sync(
    state: ConfigTrainingState, *, now: float, min_new_games: int | None, cooldown_seconds: int
) -> TrainingSyncVerdict:
    """Whether ``state.config`` gets a new TrainingRun now, and why (not)."""
    if state.active_runs > 0:
        return TrainingSyncVerdict(state.config, False, f"{state.active_runs} run(s) active")
    readiness = decide_data_readiness(
        config=state.config,
        inventory=DataInventory(distinct_games={state.config: state.total_games}),
        games_at_last_training=state.games_at_last_training,
        min_new_games=min_new_games,
    )
    if not readiness.ready:
        return TrainingSyncVerdict(state.config, False, readiness.message)
    remaining = cooldown_remaining_seconds(
        last_started_at=state.last_started_at, now=now, cooldown_seconds=cooldown_seconds
    )
    if remaining > 0:
        return TrainingSyncVerdict(state.config, False, f"cooling down, {remaining:.0f}s left")
    return TrainingSyncVerdict(state.config, True, readiness.message)


def plan_training_runs(
    states: Sequence[ConfigTrainingState],
    *,
    now: float,
    min_new_games: int | None,
    cooldown_seconds: int,
) -> tuple[list[NewTrainingRun], list[TrainingSyncVerdict]]:
    """The runs to create (at most one per config) and the verdict of every config."""
    runs = []
    verdicts = []
    for state in states:
        verdict = decide_training_sync(
            state, now=now, min_new_games=min_new_games, cooldown_seconds=cooldown_seconds
        )
        verdicts.append(verdict)
        if verdict.create:
            readiness = decide_data_readiness(
                config=state.config,
                inventory=DataInventory(distinct_games={state.config: state.total_games}),
                games_at_last_training=state.games_at_last_training,
                min_new_games=min_new_games,
            )
            runs.append(
                NewTrainingRun(
                    config=state.config,
                    name=training_run_name(state.config, state.highest_index + 1),
                    min_new_games=readiness.min_new_games,
                    new_games=readiness.new_games,
                )
            )
    return runs, verdicts
