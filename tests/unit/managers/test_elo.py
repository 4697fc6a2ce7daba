"""Elo arithmetic: expected scores, score → difference with its interval, K-factor updates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.elo import (
    ELO_DIFF_LIMIT,
    INITIAL_RATING,
    GameResult,
    apply_game_results,
    elo_difference,
    estimate_elo_difference,
    expected_score,
    update_ratings,
)


class TestExpectedScore:
    @pytest.mark.parametrize(
        ("rating", "opponent", "expected"),
        [
            pytest.param(1500, 1500, 0.5, id="equal-ratings-half"),
            pytest.param(1900, 1500, 10 / 11, id="plus-400-is-10-to-1"),
            pytest.param(1500, 1900, 1 / 11, id="minus-400-is-1-to-10"),
        ],
    )
    def test_values(self, rating: float, opponent: float, expected: float) -> None:
        assert expected_score(rating=rating, opponent=opponent) == pytest.approx(expected)

    @given(st.floats(-3000, 3000), st.floats(-3000, 3000))
    def test_both_sides_sum_to_one(self, a: float, b: float) -> None:
        assert expected_score(rating=a, opponent=b) + expected_score(
            rating=b, opponent=a
        ) == pytest.approx(1.0)


class TestEloDifference:
    @pytest.mark.parametrize(
        ("score", "expected"),
        [
            pytest.param(0.5, 0.0, id="even-score-zero"),
            pytest.param(10 / 11, 400.0, id="ten-to-one-is-400"),
            pytest.param(1 / 11, -400.0, id="one-to-ten-is-minus-400"),
            pytest.param(1.0, ELO_DIFF_LIMIT, id="sweep-clamped"),
            pytest.param(0.0, -ELO_DIFF_LIMIT, id="shutout-clamped"),
            pytest.param(0.9999, ELO_DIFF_LIMIT, id="near-sweep-clamped"),
        ],
    )
    def test_values(self, score: float, expected: float) -> None:
        assert elo_difference(score=score) == pytest.approx(expected)

    @pytest.mark.parametrize("score", [-0.1, 1.1], ids=["below-zero", "above-one"])
    def test_rejects_scores_outside_unit_interval(self, score: float) -> None:
        with pytest.raises(ValueError, match="within"):
            elo_difference(score=score)

    @given(st.floats(0.01, 0.99))
    def test_inverse_of_expected_score(self, p: float) -> None:
        diff = elo_difference(score=p)
        assert expected_score(rating=diff, opponent=0.0) == pytest.approx(p)


class TestEstimateEloDifference:
    def test_no_games_is_zero_within_the_widest_interval(self) -> None:
        estimate = estimate_elo_difference(wins=0, losses=0, draws=0)
        assert (estimate.diff, estimate.low, estimate.high) == (
            0.0,
            -ELO_DIFF_LIMIT,
            ELO_DIFF_LIMIT,
        )

    def test_even_result_is_symmetric(self) -> None:
        estimate = estimate_elo_difference(wins=40, losses=40, draws=20)
        assert estimate.diff == pytest.approx(0.0)
        assert estimate.low == pytest.approx(-estimate.high)
        assert estimate.low < 0 < estimate.high

    def test_known_interval(self) -> None:
        # 60 wins, 40 losses: p = 0.6, se = sqrt(0.24 / 100) = 0.04899; p ± 1.96 se.
        estimate = estimate_elo_difference(wins=60, losses=40, draws=0)
        se = math.sqrt(0.6 * 0.4 / 100)
        assert estimate.diff == pytest.approx(elo_difference(score=0.6))
        assert estimate.low == pytest.approx(elo_difference(score=0.6 - 1.959964 * se))
        assert estimate.high == pytest.approx(elo_difference(score=0.6 + 1.959964 * se))

    def test_sweep_is_finite_and_counts_as_n_minus_half(self) -> None:
        estimate = estimate_elo_difference(wins=10, losses=0, draws=0)
        assert estimate.diff == pytest.approx(elo_difference(score=9.5 / 10))

    def test_more_games_narrow_the_interval(self) -> None:
        few = estimate_elo_difference(wins=6, losses=4, draws=0)
        many = estimate_elo_difference(wins=600, losses=400, draws=0)
        assert many.high - many.low < few.high - few.low

    def test_rejects_negative_counts(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            estimate_elo_difference(wins=-1, losses=0, draws=0)

    @given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
    def test_interval_contains_estimate(self, wins: int, losses: int, draws: int) -> None:
        estimate = estimate_elo_difference(wins=wins, losses=losses, draws=draws)
        assert estimate.low <= estimate.diff <= estimate.high


class TestUpdateRatings:
    @pytest.mark.parametrize(
        ("score_a", "expected_a", "expected_b"),
        [
            pytest.param(1.0, 1516.0, 1484.0, id="win-between-equals-moves-k-half"),
            pytest.param(0.5, 1500.0, 1500.0, id="draw-between-equals-moves-nothing"),
            pytest.param(0.0, 1484.0, 1516.0, id="loss-between-equals"),
        ],
    )
    def test_equal_ratings(self, score_a: float, expected_a: float, expected_b: float) -> None:
        a, b = update_ratings(rating_a=1500, rating_b=1500, score_a=score_a)
        assert a == pytest.approx(expected_a)
        assert b == pytest.approx(expected_b)

    def test_upset_moves_more_than_expected_win(self) -> None:
        upset, _ = update_ratings(rating_a=1300, rating_b=1700, score_a=1.0)
        expected_win, _ = update_ratings(rating_a=1700, rating_b=1300, score_a=1.0)
        assert upset - 1300 > expected_win - 1700

    def test_k_factor_scales_the_change(self) -> None:
        a16, _ = update_ratings(rating_a=1500, rating_b=1500, score_a=1.0, k=16)
        assert a16 == pytest.approx(1508.0)

    def test_rejects_score_outside_unit_interval(self) -> None:
        with pytest.raises(ValueError, match="within"):
            update_ratings(rating_a=1500, rating_b=1500, score_a=2.0)

    @given(st.floats(500, 2500), st.floats(500, 2500), st.sampled_from([0.0, 0.5, 1.0]))
    def test_conserves_rating_sum(self, a: float, b: float, score: float) -> None:
        new_a, new_b = update_ratings(rating_a=a, rating_b=b, score_a=score)
        assert new_a + new_b == pytest.approx(a + b)


class TestApplyGameResults:
    def test_new_players_start_at_initial_rating(self) -> None:
        ratings = apply_game_results({}, [GameResult("new", "old", 0.5)])
        assert ratings == {"new": INITIAL_RATING, "old": INITIAL_RATING}

    def test_folds_in_order_and_leaves_input_alone(self) -> None:
        before = {"a": 1500.0, "b": 1500.0}
        games = [GameResult("a", "b", 1.0), GameResult("a", "b", 1.0)]
        after = apply_game_results(before, games)
        first, second = update_ratings(rating_a=1500, rating_b=1500, score_a=1.0)
        again, _ = update_ratings(rating_a=first, rating_b=second, score_a=1.0)
        assert after["a"] == pytest.approx(again)
        assert before == {"a": 1500.0, "b": 1500.0}

    def test_rejects_self_play_records(self) -> None:
        with pytest.raises(ValueError, match="itself"):
            apply_game_results({}, [GameResult("a", "a", 1.0)])
