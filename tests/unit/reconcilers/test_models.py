"""The model registry as reconcilers use it: promotion into the history store (or, without one,
into the process), the promoted model read back, remembered, and replaced by the next one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.api.trainingrun import TrainedModel
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.models import fetch_promoted_model, model_id, record_promotion
from ringrift_operator.state.history import HistoryStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def model(generation: int, digit: str) -> TrainedModel:
    return TrainedModel(
        uri=f"file:///data/models/hex8_2p/r-a1-g{generation}.pt",
        sha256=digit * 64,
        generation=generation,
    )


def deps(history: HistoryStore | None) -> Deps:
    return Deps(
        client=cast(Any, None), cache=cast(Any, None), settings=OperatorSettings(),
        workload=cast(Any, None), history=history,
    )  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    async with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


async def test_promotion_is_recorded_and_read_back_by_a_fresh_process(store: HistoryStore) -> None:
    first = deps(store)
    assert await fetch_promoted_model(first, config="hex8_2p") is None
    await record_promotion(first, config="hex8_2p", model=model(1, "a"),
                           training_run="ns/r1", now=NOW)  # fmt: skip
    assert (await fetch_promoted_model(first, config="hex8_2p")) is not None
    fresh = deps(store)  # a restarted operator: nothing in memory
    promoted = await fetch_promoted_model(fresh, config="hex8_2p")
    assert promoted is not None
    assert promoted.uri == model(1, "a").uri
    assert promoted.promoted
    assert promoted.training_run == "ns/r1"


async def test_the_next_promotion_replaces_the_previous_one(store: HistoryStore) -> None:
    d = deps(store)
    await record_promotion(d, config="hex8_2p", model=model(1, "a"), training_run="ns/r1",
                           now=NOW)  # fmt: skip
    await record_promotion(d, config="hex8_2p", model=model(2, "b"), training_run="ns/r2",
                           now=NOW)  # fmt: skip
    registry = await store.list_models(config="hex8_2p")
    assert [(m.generation, m.promoted) for m in registry] == [(1, False), (2, True)]
    fresh = await fetch_promoted_model(deps(store), config="hex8_2p")
    assert fresh is not None
    assert fresh.model_id == model_id(model(2, "b"))


async def test_promoting_twice_changes_nothing(store: HistoryStore) -> None:
    d = deps(store)
    for _ in range(2):
        await record_promotion(d, config="hex8_2p", model=model(1, "a"), training_run="ns/r1",
                               now=NOW)  # fmt: skip
    assert len(await store.list_models(config="hex8_2p")) == 1


async def test_without_a_history_store_the_process_remembers_the_promotion() -> None:
    d = deps(None)
    assert await fetch_promoted_model(d, config="hex8_2p") is None
    await record_promotion(d, config="hex8_2p", model=model(3, "c"), training_run="ns/r",
                           now=NOW)  # fmt: skip
    promoted = await fetch_promoted_model(d, config="hex8_2p")
    assert promoted is not None
    assert (promoted.generation, promoted.promoted) == (3, True)
    assert await fetch_promoted_model(d, config="square8_2p") is None


def test_model_ids_name_generation_and_content() -> None:
    assert model_id(model(4, "d")) == "g4-dddddddddddd"
