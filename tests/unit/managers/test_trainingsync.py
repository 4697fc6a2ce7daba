"""Training sync: a run per ready config, never two while one is active, after the cooldown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.trainingsync import (
    ConfigTrainingState,
    decide_training_sync,
    parse_run_index,
    plan_training_runs,
    training_run_name,
)

NOW = 10_000.0


def state(**kw: object) -> ConfigTrainingState:
    base: dict[str, object] = dict(config="hex8_2p", total_games=600, games_at_last_training=0,
                                   active_runs=0)  # fmt: skip
    base.update(kw)
    return ConfigTrainingState(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("st_", "min_new", "create", "reason"),
    [
        pytest.param(state(), None, True, "600 new games", id="board-default-500-met"),
        pytest.param(state(total_games=499), None, False, "499 new games", id="below-default"),
        pytest.param(state(total_games=20), 20, True, "20 new games", id="explicit-threshold"),
        pytest.param(
            state(total_games=700, games_at_last_training=300),
            None,
            False,
            "400 new games",
            id="counts-since-last-training",
        ),
        pytest.param(state(active_runs=1), None, False, "1 run(s) active", id="one-active"),
        pytest.param(
            state(last_started_at=NOW - 100), None, False, "cooling down, 200s", id="cooldown"
        ),
        pytest.param(state(last_started_at=NOW - 301), None, True, "600", id="cooldown-over"),
        pytest.param(
            state(games_at_last_training=900), None, False, "0 new games", id="data-pruned"
        ),
    ],
)
def test_decide_training_sync(
    st_: ConfigTrainingState, min_new: int | None, create: bool, reason: str
) -> None:
    verdict = decide_training_sync(st_, now=NOW, min_new_games=min_new, cooldown_seconds=300)
    assert verdict.create is create
    assert reason in verdict.reason


def test_plan_names_the_next_run_after_the_highest_seen() -> None:
    runs, verdicts = plan_training_runs(
        [state(highest_index=4), state(config="square8_2p", total_games=3)],
        now=NOW, min_new_games=None, cooldown_seconds=300,
    )  # fmt: skip
    assert [(r.config, r.name, r.min_new_games, r.new_games) for r in runs] == [
        ("hex8_2p", "auto-train-hex8-2p-5", 500, 600)
    ]
    assert [v.create for v in verdicts] == [True, False]


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("auto-train-hex8-2p-7", 7),
        ("auto-train-hex8-2p-", None),
        ("auto-train-hex8-3p-7", None),
        ("mine", None),
        ("auto-train-hex8-2p-x1", None),
    ],
)
def test_parse_run_index(name: str, index: int | None) -> None:
    assert parse_run_index(name, "hex8_2p") == index


@given(
    total=st.integers(0, 10_000), used=st.integers(0, 10_000), active=st.integers(0, 3),
    since=st.one_of(st.none(), st.floats(0, 1000)), highest=st.integers(0, 50),
)  # fmt: skip
def test_never_a_run_while_one_is_active_and_names_are_fresh(
    total: int, used: int, active: int, since: float | None, highest: int
) -> None:
    started = None if since is None else NOW - since
    s = state(total_games=total, games_at_last_training=used, active_runs=active,
              last_started_at=started, highest_index=highest)  # fmt: skip
    runs, _ = plan_training_runs([s], now=NOW, min_new_games=100, cooldown_seconds=300)
    assert len(runs) <= 1
    if active or total - used < 100 or (since is not None and since < 300):
        assert runs == []
    for run in runs:
        assert parse_run_index(run.name, "hex8_2p") == highest + 1
        assert run.name == training_run_name("hex8_2p", highest + 1)
