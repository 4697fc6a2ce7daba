"""Gauntlet job of the sample workload: play the candidate model against its opponents.

No game is really played: each game's outcome is drawn from a generator seeded by the job's seed,
the candidate's fingerprint (the model file's sha256, or of its reference when the file is not on
this node), the shard and the game number, around a strength that the fingerprint fixes. Tests
and the sandbox's e2e suite force a result with ``RINGRIFT_SAMPLE_WIN_RATE_PERCENT`` (sample
workload only; a real image ignores it). Called by ``workload.main``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ringrift_operator.api.contract import JobKind, WorkloadResult
from ringrift_operator.workload.games import derive_seed, sha256_bytes, sha256_file

WIN_RATE_OVERRIDE_ENV = "RINGRIFT_SAMPLE_WIN_RATE_PERCENT"
DRAW_PERCENT = 8
MIN_STRENGTH_PERCENT = 35
STRENGTH_SPREAD_PERCENT = 31  # strengths 35..65: candidates are sometimes promoted, sometimes not


@dataclass(frozen=True, slots=True)
class GauntletScore:
    wins: int
    losses: int
    draws: int


def resolve_model_file(*, data_dir: Path, model_path: str) -> Path:
    """The file a model reference names: a ``file://`` URI, an absolute path, or a path
    relative to the data directory."""
    path = Path(model_path.removeprefix("file://"))
    return path if path.is_absolute() else data_dir / path


def model_fingerprint(*, data_dir: Path, model_path: str) -> str:
    """sha256 of the model file when it is on this node, else of the reference itself."""
    path = resolve_model_file(data_dir=data_dir, model_path=model_path)
    return sha256_file(path) if path.is_file() else sha256_bytes(model_path.encode())


def candidate_strength(fingerprint: str) -> int:
    """The candidate's win chance in percent, fixed by its fingerprint."""
    return MIN_STRENGTH_PERCENT + int(fingerprint[:8], 16) % STRENGTH_SPREAD_PERCENT


def score_gauntlet(
    *,
    games: int,
    seed: int,
    fingerprint: str,
    shard: int,
    opponents: Sequence[str],
    win_rate_percent: int | None,
) -> GauntletScore:
    """Wins, losses and draws of one shard. With a win-rate override the result is exact:
    round(games * percent / 100) wins, the rest losses, no draws."""
    if win_rate_percent is not None:
        wins = (games * win_rate_percent + 50) // 100
        return GauntletScore(wins=wins, losses=games - wins, draws=0)
    strength = candidate_strength(fingerprint)
    wins = losses = draws = 0
    for number in range(games):
        opponent = opponents[number % len(opponents)]
        roll = random.Random(derive_seed(seed, fingerprint, shard, number, opponent)).randrange(100)
        if roll < strength:
            wins += 1
        elif roll < strength + DRAW_PERCENT:
            draws += 1
        else:
            losses += 1
    return GauntletScore(wins=wins, losses=losses, draws=draws)


def run_gauntlet(
    *,
    data_dir: Path,
    games: int,
    model_path: str,
    opponents: Sequence[str],
    seed: int,
    shard: int,
    win_rate_percent: int | None,
    pace: Callable[[float], None],
) -> WorkloadResult:
    """Play the shard's games and report the score."""
    fingerprint = model_fingerprint(data_dir=data_dir, model_path=model_path)
    for _ in range(games):
        pace(1 / games)
    score = score_gauntlet(
        games=games,
        seed=seed,
        fingerprint=fingerprint,
        shard=shard,
        opponents=opponents,
        win_rate_percent=win_rate_percent,
    )
    forced = " (forced win rate)" if win_rate_percent is not None else ""
    return WorkloadResult(
        kind=JobKind.GAUNTLET,
        wins=score.wins,
        losses=score.losses,
        draws=score.draws,
        message=f"{score.wins}W {score.losses}L {score.draws}D in {games} games "
        f"against {len(opponents)} opponent(s){forced}",
    )
