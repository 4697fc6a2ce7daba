"""The Elo-sync decision (the seed's EloSyncLoop): the rating summary the self-play scheduler's
Elo boost reads, built from what the history store holds.

``loops.elosync`` reads, per config, the ratings of its models and the history of the one that
counts; :func:`summarize_config_elo` picks that model (the promoted one when it is rated, else
the best rated) and its gain over the stagnation window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ringrift_operator.managers.selfplayscheduling import ConfigElo


@dataclass(frozen=True, slots=True)
class RatedModel:
    model_id: str
    rating: float


@dataclass(frozen=True, slots=True)
class RatingPoint:
    at: float
    rating: float


def choose_current_model(
    ratings: Sequence[RatedModel], *, promoted: str | None
) -> RatedModel | None:
    """The promoted model when it is rated, else the best rated one (None: nothing rated)."""
    for model in ratings:
        if model.model_id == promoted:
            return model
    return max(ratings, key=lambda m: (m.rating, m.model_id), default=None)


def summarize_config_elo(
    current: RatedModel, history: Sequence[RatingPoint], *, now: float, window: float
) -> ConfigElo:
    """``current``'s rating and its gain since the oldest rating within ``window`` seconds
    (None when it has no rating that old or older to compare with: no stagnation signal)."""
    inside = [p for p in history if now - p.at <= window]
    before = [p for p in history if now - p.at > window]
    base = before[-1] if before else None
    if base is None and inside and inside[0].at < now - window / 2:
        base = inside[0]  # rated for most of the window: compare with its oldest rating
    gain = None if base is None else current.rating - base.rating
    return ConfigElo(rating=current.rating, recent_gain=gain)
