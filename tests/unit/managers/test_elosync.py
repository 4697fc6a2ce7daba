"""Elo sync: which model's rating counts, and its recent gain (the stagnation signal)."""

from __future__ import annotations

import pytest

from ringrift_operator.managers.elosync import (
    RatedModel,
    RatingPoint,
    choose_current_model,
    summarize_config_elo,
)
from ringrift_operator.managers.selfplayscheduling import (
    SchedulerSettings,
    compute_config_weights,
)

A, B = RatedModel("a", 1500.0), RatedModel("b", 1600.0)


@pytest.mark.parametrize(
    ("ratings", "promoted", "chosen"),
    [([A, B], "a", A), ([A, B], None, B), ([A, B], "unrated", B), ([], "a", None)],
)
def test_choose_current_model(
    ratings: list[RatedModel], promoted: str | None, chosen: RatedModel | None
) -> None:
    assert choose_current_model(ratings, promoted=promoted) == chosen


@pytest.mark.parametrize(
    ("history", "gain"),
    [
        pytest.param(
            [RatingPoint(0, 1400), RatingPoint(900, 1550)], 200.0, id="from-before-window"
        ),
        pytest.param([RatingPoint(200, 1590)], 10.0, id="oldest-in-window-rated-long-enough"),
        pytest.param([RatingPoint(900, 1590)], None, id="too-recent-to-judge"),
        pytest.param([], None, id="no-history"),
    ],
)
def test_summarize_config_elo(history: list[RatingPoint], gain: float | None) -> None:
    summary = summarize_config_elo(B, history, now=1000, window=900)
    assert summary.rating == 1600
    assert summary.recent_gain == gain


def test_synced_ratings_move_the_scheduler_weights() -> None:
    settings = SchedulerSettings(enabled_configs=("hex8_2p", "square8_2p"))
    before = {w.config: w.elo_boost for w in compute_config_weights(settings=settings)}
    lagging = summarize_config_elo(RatedModel("x", 1300), [], now=0, window=60)
    leading = summarize_config_elo(RatedModel("y", 1700), [], now=0, window=60)
    after = {
        w.config: w.elo_boost
        for w in compute_config_weights(
            settings=settings, elo={"hex8_2p": lagging, "square8_2p": leading}
        )
    }
    assert before["hex8_2p"] == before["square8_2p"]  # both unrated
    assert after["hex8_2p"] > after["square8_2p"]  # the lagging config gets more self-play
