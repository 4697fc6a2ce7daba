"""The Elo-sync loop (leader only): reads the current ratings from the history store and hands
them to the self-play scheduler, whose Elo boost then follows them (``managers.elosync``).

Each tick reads, for every config the autopilot may pick, its models' ratings, its promoted
model and that model's rating history over the stagnation window, and replaces the ratings
dict it shares with the idle detection and the queue population. Without a history store it
does nothing (every config then counts as unrated).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.managers.elosync import (
    RatedModel,
    RatingPoint,
    choose_current_model,
    summarize_config_elo,
)
from ringrift_operator.managers.selfplayscheduling import ConfigElo
from ringrift_operator.reconcilers.deps import Deps

log = logging.getLogger(__name__)


@dataclass
class EloSync:
    deps: Deps
    configs: Sequence[str]
    window_seconds: float
    ratings: dict[str, ConfigElo]  # shared with the autopilot: replaced in place
    models: dict[str, str] = field(default_factory=dict)  # config -> the rated model used
    syncs: int = 0

    async def sync(self) -> None:
        history = self.deps.history
        if history is None:
            return
        now = self.deps.clock().timestamp()
        fresh: dict[str, ConfigElo] = {}
        models: dict[str, str] = {}
        for config in self.configs:
            rated = [RatedModel(r.model_id, r.rating)
                     for r in await history.list_elo_ratings(config=config)]  # fmt: skip
            if not rated:
                continue
            promoted = await history.fetch_promoted_model(config=config)
            current = choose_current_model(rated, promoted=promoted.model_id if promoted else None)
            if current is None:
                continue
            points = [
                RatingPoint(r.updated_at, r.rating)
                for r in await history.list_elo_history(
                    config=config, model_id=current.model_id, since=now - 2 * self.window_seconds
                )
            ]
            fresh[config] = summarize_config_elo(current, points, now=now,
                                                 window=self.window_seconds)  # fmt: skip
            models[config] = current.model_id
        self.ratings.clear()
        self.ratings.update(fresh)
        self.models = models
        self.syncs += 1

    def status(self) -> dict[str, Any]:
        return {
            "syncs": self.syncs,
            "ratings": {
                config: {
                    "model": self.models.get(config, ""),
                    "rating": round(e.rating, 1),
                    "recent_gain": None if e.recent_gain is None else round(e.recent_gain, 1),
                }
                for config, e in sorted(self.ratings.items())
            },
        }
