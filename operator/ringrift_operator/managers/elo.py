"""Elo arithmetic: score → rating difference with a confidence interval, and K-factor updates.

Pure math shared by the gauntlet scoring in ``managers.training`` (how much stronger is the new
model?) and by the Elo-sync loop, which folds recorded games into per-model ratings with
:func:`apply_game_results`. Ratings are floats here; they are rounded where they reach a resource.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

INITIAL_RATING = 1500.0
DEFAULT_K_FACTOR = 32.0
ELO_SCALE = 400.0  # a 400-point gap means 10:1 expected odds
ELO_DIFF_LIMIT = 800.0  # |difference| reported for a clean sweep or a shutout, at most
Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


def expected_score(*, rating: float, opponent: float) -> float:
    """The score (0..1) a player rated ``rating`` is expected to make against ``opponent``."""
    return 1.0 / (1.0 + math.pow(10.0, (opponent - rating) / ELO_SCALE))


def elo_difference(*, score: float) -> float:
    """Rating difference implied by a mean score ``p``: ``-400·log10(1/p - 1)``.

    ``p`` of 0 or 1 has no finite answer, so the result is clamped to ±:data:`ELO_DIFF_LIMIT`
    (the limit is reached at p ≈ 0.99 / 0.01 already).
    """
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be within [0, 1], got {score}")
    if score <= 0.0:
        return -ELO_DIFF_LIMIT
    if score >= 1.0:
        return ELO_DIFF_LIMIT
    diff = -ELO_SCALE * math.log10(1.0 / score - 1.0)
    return max(-ELO_DIFF_LIMIT, min(ELO_DIFF_LIMIT, diff))


@dataclass(frozen=True, slots=True)
class EloEstimate:
    """A rating difference and its 95 % confidence interval, all in Elo points."""

    diff: float
    low: float
    high: float


def estimate_elo_difference(*, wins: int, losses: int, draws: int) -> EloEstimate:
    """Elo difference of a player who scored ``wins``/``losses``/``draws`` (draws count half).

    Method: the mean per-game score ``p`` (1, ½, 0) has the sample variance
    ``s² = Σ(xᵢ - p)² / n`` and the standard error ``se = s / √n``; the interval
    ``p ± 1.96·se`` (normal approximation) is mapped through the monotone Elo curve, so the
    interval is asymmetric in Elo points. ``p`` and the interval ends are first clamped to
    ``[1/(2n), 1 - 1/(2n)]`` (n ≥ 2) — a sweep counts as n - ½ of n — so that sweeps give a finite
    difference. A sweep has no spread, so its interval collapses to the point: callers guard
    with a minimum game count. No games at all gives 0 within ±:data:`ELO_DIFF_LIMIT`.
    """
    if min(wins, losses, draws) < 0:
        raise ValueError("wins, losses and draws must be non-negative")
    games = wins + losses + draws
    if games == 0:
        return EloEstimate(diff=0.0, low=-ELO_DIFF_LIMIT, high=ELO_DIFF_LIMIT)
    p = (wins + 0.5 * draws) / games
    variance = (wins * (1.0 - p) ** 2 + draws * (0.5 - p) ** 2 + losses * p**2) / games
    se = math.sqrt(variance / games)
    # A single game would clamp to exactly ½ and hide who won; count it as half of two.
    edge = 1.0 / (2.0 * max(games, 2))

    def clamp(x: float) -> float:
        return max(edge, min(1.0 - edge, x))

    return EloEstimate(
        diff=elo_difference(score=clamp(p)),
        low=elo_difference(score=clamp(p - Z_95 * se)),
        high=elo_difference(score=clamp(p + Z_95 * se)),
    )


def update_ratings(
    *, rating_a: float, rating_b: float, score_a: float, k: float = DEFAULT_K_FACTOR
) -> tuple[float, float]:
    """New ratings of A and B after one game where A scored ``score_a`` (1 win, ½ draw, 0 loss).

    Standard Elo: each side moves by ``k·(actual - expected)``; the sum of ratings is kept.
    """
    if not 0.0 <= score_a <= 1.0:
        raise ValueError(f"score_a must be within [0, 1], got {score_a}")
    delta = k * (score_a - expected_score(rating=rating_a, opponent=rating_b))
    return rating_a + delta, rating_b - delta


@dataclass(frozen=True, slots=True)
class GameResult:
    """One recorded game between two rated players; ``score_a`` is A's result (1, 0.5, 0)."""

    player_a: str
    player_b: str
    score_a: float


def apply_game_results(
    ratings: Mapping[str, float],
    games: Iterable[GameResult],
    *,
    k: float = DEFAULT_K_FACTOR,
    initial: float = INITIAL_RATING,
) -> dict[str, float]:
    """Fold ``games`` in order into a copy of ``ratings``; new players start at ``initial``."""
    updated = dict(ratings)
    for game in games:
        if game.player_a == game.player_b:
            raise ValueError(f"a player cannot play itself: {game.player_a!r}")
        a, b = updated.get(game.player_a, initial), updated.get(game.player_b, initial)
        updated[game.player_a], updated[game.player_b] = update_ratings(
            rating_a=a, rating_b=b, score_a=game.score_a, k=k
        )
    return updated
