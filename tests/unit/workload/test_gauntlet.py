"""Gauntlet: a score reproducible from seed and model, and an exact override for e2e tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ringrift_operator.api.contract import EXIT_OK, Env, JobKind
from ringrift_operator.workload.games import sha256_bytes
from ringrift_operator.workload.gauntlet import (
    MIN_STRENGTH_PERCENT,
    STRENGTH_SPREAD_PERCENT,
    WIN_RATE_OVERRIDE_ENV,
    GauntletScore,
    candidate_strength,
    model_fingerprint,
    score_gauntlet,
)

if TYPE_CHECKING:
    from conftest import Workload


@pytest.mark.parametrize(
    ("games", "percent", "wins"),
    [
        pytest.param(20, 100, 20, id="all"),
        pytest.param(20, 0, 0, id="none"),
        pytest.param(20, 55, 11, id="55-percent"),
        pytest.param(3, 50, 2, id="half-rounds-up"),
        pytest.param(10, 49, 5, id="4.9-rounds-to-5"),
        pytest.param(10, 44, 4, id="4.4-rounds-to-4"),
    ],
)
def test_win_rate_override_is_exact(
    workload: Workload, games: int, percent: int, wins: int
) -> None:
    env = workload.env("gauntlet", **{Env.GAMES: str(games), WIN_RATE_OVERRIDE_ENV: str(percent)})
    outcome = workload.run(env)
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert outcome.result.kind is JobKind.GAUNTLET
    assert (outcome.result.wins, outcome.result.losses, outcome.result.draws) == (
        wins,
        games - wins,
        0,
    )
    assert "forced win rate" in outcome.result.message
    assert workload.files() == []


def test_same_inputs_same_score(workload: Workload) -> None:
    env = workload.env("gauntlet", **{Env.GAMES: "50"})
    first, second = workload.run(env), workload.run(env)
    assert first.raw == second.raw
    assert first.result is not None
    result = first.result
    assert (result.wins or 0) + (result.losses or 0) + (result.draws or 0) == 50


def test_score_depends_on_seed_and_shard() -> None:
    scores = {
        score_gauntlet(
            games=40,
            seed=seed,
            fingerprint="ab" * 32,
            shard=shard,
            opponents=["a", "b"],
            win_rate_percent=None,
        )
        for seed in range(4)
        for shard in range(2)
    }
    assert len(scores) > 1
    assert all(s.wins + s.losses + s.draws == 40 for s in scores)


def test_score_follows_the_candidate_strength() -> None:
    weak, strong = "00000000" + "0" * 56, f"{STRENGTH_SPREAD_PERCENT - 1:08x}" + "0" * 56
    assert candidate_strength(weak) == MIN_STRENGTH_PERCENT
    assert candidate_strength(strong) == MIN_STRENGTH_PERCENT + STRENGTH_SPREAD_PERCENT - 1

    def score(fp: str) -> GauntletScore:
        return score_gauntlet(
            games=2000, seed=1, fingerprint=fp, shard=0, opponents=["x"], win_rate_percent=None
        )

    assert score(weak).wins < score(strong).wins
    assert score(strong).wins / 2000 == pytest.approx(0.65, abs=0.05)


def test_fingerprint_is_the_model_file_sha_when_present(tmp_path: Path) -> None:
    model = tmp_path / "models/square8_2p/c-g2.pt"
    reference = "models/square8_2p/c-g2.pt"
    assert model_fingerprint(data_dir=tmp_path, model_path=reference) == sha256_bytes(
        reference.encode()
    )
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    expected = sha256_bytes(b"weights")
    for ref in (reference, str(model), model.as_uri()):
        assert model_fingerprint(data_dir=tmp_path, model_path=ref) == expected


def test_games_are_paced(workload: Workload) -> None:
    outcome = workload.run(workload.env("gauntlet", **{Env.GAMES: "4"}), "--duration-ms", "400")
    assert outcome.sleeps == pytest.approx([0.1] * 4)
