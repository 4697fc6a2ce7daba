"""Training: a model file whose bytes follow from the data, its sha256, the next generation, and
rank 0 alone writing in a distributed run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ringrift_operator.api.contract import EXIT_BAD_INPUT, EXIT_OK, Env, JobKind
from ringrift_operator.workload.training import MODEL_MAGIC, next_generation, parse_generation

if TYPE_CHECKING:
    from conftest import Outcome, Workload


def _train(workload: Workload, **overrides: str) -> Outcome:
    return workload.run(workload.env("training", **{Env.JOB_NAME: "train-1", **overrides}))


def _with_data(workload: Workload, *, export: bool = True) -> None:
    workload.run(workload.env("selfplay"))
    if export:
        workload.run(workload.env("export", **{Env.JOB_NAME: "export-1"}))


def test_writes_the_model_and_reports_uri_sha_and_generation(workload: Workload) -> None:
    _with_data(workload)
    outcome = _train(workload)
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert outcome.result.kind is JobKind.TRAINING
    model = outcome.result.model
    assert model is not None
    path = workload.data_dir / "models/square8_2p/train-1-a1-g1.pt"
    assert outcome.result.files == ["models/square8_2p/train-1-a1-g1.pt"]
    assert model.uri == path.resolve().as_uri()
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.generation == 1
    assert path.read_bytes().startswith(MODEL_MAGIC)


@pytest.mark.parametrize(
    ("model_path", "generation"),
    [
        pytest.param("", None, id="none"),
        pytest.param("models/square8_2p/g3.pt", 3, id="bare-g3"),
        pytest.param("file:///data/models/square8_2p/tr-a1-g12.pt", 12, id="uri"),
        pytest.param("/data/models/square8_2p/model.g7.pt", 7, id="dotted"),
        pytest.param("models/square8_2p/g0.pt", 0, id="g0"),
        pytest.param("models/square8_2p/best.pt", None, id="no-generation"),
        pytest.param("models/square8_2p/x-g.pt", None, id="g-without-number"),
        pytest.param("models/square8_2p/big5.pt", None, id="not-a-g-suffix"),
    ],
)
def test_parse_generation(model_path: str, generation: int | None) -> None:
    assert parse_generation(model_path) == generation
    assert next_generation(model_path) == (1 if generation is None else generation + 1)


def test_generation_follows_the_parent_model(workload: Workload) -> None:
    _with_data(workload)
    outcome = _train(workload, **{Env.MODEL_PATH: "models/square8_2p/train-0-a1-g4.pt"})
    assert outcome.result is not None
    assert outcome.result.model is not None
    assert outcome.result.model.generation == 5
    assert outcome.result.files == ["models/square8_2p/train-1-a1-g5.pt"]


def test_same_data_same_model_other_data_other_model(workload: Workload) -> None:
    _with_data(workload)
    first, second = _train(workload), _train(workload, **{Env.JOB_NAME: "train-2"})
    workload.run(workload.env("selfplay", **{Env.JOB_NAME: "job-2"}))
    workload.run(workload.env("export", **{Env.JOB_NAME: "export-2"}))
    third = _train(workload, **{Env.JOB_NAME: "train-3"})
    shas = [o.result.model.sha256 for o in (first, second, third) if o.result and o.result.model]
    assert len(shas) == 3
    assert shas[0] == shas[1] != shas[2]


def test_trains_from_games_when_nothing_was_exported(workload: Workload) -> None:
    _with_data(workload, export=False)
    outcome = _train(workload)
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert "games" in outcome.result.message
    assert (outcome.result.samples or 0) > 0


def test_no_data_is_bad_input(workload: Workload) -> None:
    outcome = _train(workload)
    assert outcome.code == EXIT_BAD_INPUT
    assert outcome.result is not None
    assert "no square8_2p training data" in outcome.result.message
    assert workload.files() == []


DISTRIBUTED = {Env.WORLD_SIZE: "3", Env.MASTER_ADDR: "train-1-0.svc", Env.MASTER_PORT: "29500"}


@pytest.mark.parametrize(("rank", "writes"), [(0, True), (1, False), (2, False)])
def test_only_rank_0_writes_in_a_distributed_run(
    workload: Workload, rank: int, writes: bool
) -> None:
    _with_data(workload)
    outcome = _train(workload, **DISTRIBUTED, **{Env.NODE_RANK: str(rank)})
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert (outcome.result.model is not None) is writes
    assert bool(outcome.result.files) is writes
    models = Path(workload.data_dir / "models")
    assert models.exists() is writes
