"""The model registry as the reconcilers use it: the promoted model of each config.

The history store's ``models`` table is the registry (``promote_model`` keeps one promoted model
per config). ``Deps.promoted_models`` mirrors the promoted model of every config this process
promoted or read, so that a SelfplayJob placement does not read the database each time, and so
that promotion still works — for the life of the process — when there is no history store.
Users: the TrainingRun reconciler (promotion, the gauntlet's ``promoted`` opponent, the base model
of a training) and the SelfplayJob reconciler (the model of a job that pins none).
"""

from __future__ import annotations

import logging
from datetime import datetime

from ringrift_operator.api.trainingrun import TrainedModel
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.state.rows import ModelRecord

log = logging.getLogger(__name__)


def model_id(model: TrainedModel) -> str:
    """The registry id of a trained model: its generation and a prefix of its content hash."""
    return f"g{model.generation}-{model.sha256[:12]}"


async def fetch_promoted_model(deps: Deps, *, config: str) -> ModelRecord | None:
    """The promoted model of ``config``: this process's record, else the history store's."""
    if config in deps.promoted_models or deps.history is None:
        return deps.promoted_models.get(config)
    try:
        record = await deps.history.fetch_promoted_model(config=config)
    except Exception:
        log.exception("reading the promoted model of %s failed; using none", config)
        return None
    # Remembered, "none" included: only this process promotes while it leads, and it updates
    # the entry when it does (record_promotion), so placements need not read the database.
    deps.promoted_models[config] = record
    return record


async def record_promotion(
    deps: Deps, *, config: str, model: TrainedModel, training_run: str, now: datetime
) -> ModelRecord:
    """Register ``model`` and make it the promoted model of ``config``. Idempotent. Raises when
    the history store cannot be written: the caller retries before it reports Promoted."""
    at = now.timestamp()
    record = ModelRecord(
        model_id=model_id(model), config=config, generation=model.generation, uri=model.uri,
        sha256=model.sha256, created_at=at, training_run=training_run,
    )  # fmt: skip
    if deps.history is not None:
        existing = await deps.history.fetch_model(model_id=record.model_id)
        if existing is None:
            await deps.history.record(record)
        record = await deps.history.promote_model(model_id=record.model_id, now=at)
    else:
        record = ModelRecord(
            model_id=record.model_id, config=config, generation=model.generation,
            uri=model.uri, sha256=model.sha256, created_at=at, training_run=training_run,
            promoted=True, promoted_at=at,
        )  # fmt: skip
    deps.promoted_models[config] = record
    return record
