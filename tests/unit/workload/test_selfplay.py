"""Self-play: well-formed games in unique, atomically written files, reproducible by seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ringrift_operator.api.common import EngineMode
from ringrift_operator.api.contract import EXIT_OK, Env, JobKind
from ringrift_operator.workload import selfplay
from ringrift_operator.workload.games import read_games

if TYPE_CHECKING:
    from conftest import Workload


def test_writes_the_games_and_reports_them(workload: Workload) -> None:
    outcome = workload.run(workload.env("selfplay", **{Env.MODEL_PATH: "models/m-g3.pt"}))
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert outcome.result.kind is JobKind.SELFPLAY
    assert outcome.result.games_written == 5
    assert outcome.result.files == ["games/square8_2p/job-1-a1-0.jsonl"]
    assert workload.files() == outcome.result.files
    records, malformed = read_games(workload.data_dir / outcome.result.files[0])
    assert malformed == 0
    assert [r.game_id for r in records] == [f"job-1-a1-{n:06d}" for n in range(5)]
    assert {(r.config, r.engine_mode, r.model) for r in records} == {
        ("square8_2p", EngineMode.HEURISTIC, "models/m-g3.pt")
    }


def test_no_model_is_recorded_as_null(workload: Workload) -> None:
    workload.run(workload.env("selfplay"))
    records, _ = read_games(workload.data_dir / "games/square8_2p/job-1-a1-0.jsonl")
    assert {r.model for r in records} == {None}


@pytest.mark.parametrize("mode", list(EngineMode), ids=str)
def test_every_engine_mode(workload: Workload, mode: EngineMode) -> None:
    outcome = workload.run(workload.env("selfplay", **{Env.ENGINE_MODE: mode.value}))
    assert outcome.code == EXIT_OK


def test_same_seed_gives_the_same_bytes(workload: Workload) -> None:
    first = workload.data_dir / "first"
    second = workload.data_dir / "second"
    for out in (first, second):
        workload.run(workload.env("selfplay", **{Env.OUTPUT_DIR: out.name}))
    path = "games/square8_2p/job-1-a1-0.jsonl"
    assert (first / path).read_bytes() == (second / path).read_bytes()


def test_other_seed_gives_other_games(workload: Workload) -> None:
    workload.run(workload.env("selfplay", **{Env.SEED: "1", Env.OUTPUT_DIR: "one"}))
    workload.run(workload.env("selfplay", **{Env.SEED: "2", Env.OUTPUT_DIR: "two"}))
    path = "games/square8_2p/job-1-a1-0.jsonl"
    assert (workload.data_dir / "one" / path).read_bytes() != (
        workload.data_dir / "two" / path
    ).read_bytes()


def test_splits_large_runs_into_a_few_files(
    workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selfplay, "GAMES_PER_FILE", 2)
    outcome = workload.run(workload.env("selfplay"))
    assert outcome.result is not None
    assert outcome.result.files == [f"games/square8_2p/job-1-a1-{n}.jsonl" for n in range(3)]
    counts = [len(read_games(workload.data_dir / f)[0]) for f in outcome.result.files]
    assert counts == [2, 2, 1]


def test_attempts_and_jobs_never_collide(workload: Workload) -> None:
    workload.run(workload.env("selfplay"))
    workload.run(workload.env("selfplay", **{Env.ATTEMPT: "2"}))
    workload.run(workload.env("selfplay", **{Env.JOB_NAME: "job-2"}))
    assert workload.files() == [
        "games/square8_2p/job-1-a1-0.jsonl",
        "games/square8_2p/job-1-a2-0.jsonl",
        "games/square8_2p/job-2-a1-0.jsonl",
    ]


def test_output_dir_is_reported_relative_to_the_data_dir(workload: Workload) -> None:
    outcome = workload.run(workload.env("selfplay", **{Env.OUTPUT_DIR: "staging"}))
    assert outcome.result is not None
    assert outcome.result.files == ["staging/games/square8_2p/job-1-a1-0.jsonl"]
    assert workload.files() == outcome.result.files


def test_work_is_spread_over_the_duration(workload: Workload) -> None:
    outcome = workload.run(workload.env("selfplay"), "--duration-ms", "1000")
    assert len(outcome.sleeps) == 5
    assert sum(outcome.sleeps) == pytest.approx(1.0)


def test_no_duration_means_no_sleep(workload: Workload) -> None:
    assert workload.run(workload.env("selfplay")).sleeps == []
