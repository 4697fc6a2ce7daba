"""The training-sync loop (leader only): a TrainingRun for each config whose data is ready and
that has no active run, created in the autopilot's namespace from the settings' run template.

Each tick observes every config it trains (games as the TrainingRun reconciler counts them,
``reconcilers.trainingdata``; the config's runs from the watch), asks
``managers.trainingsync.plan_training_runs`` and creates what it returns. Names are
deterministic and runs created but not yet seen through the watch count as active, so an
interrupted tick that runs again never creates a second run of a config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.api.common import (
    ALL_CONFIG_KEYS,
    ANNOTATION_EPOCH,
    LABEL_CONFIG,
    LABEL_MANAGED_BY,
    OPERATOR_NAME,
    config_key,
    parse_config_key,
)
from ringrift_operator.api.meta import parse_rfc3339
from ringrift_operator.api.settings import AutopilotSettings
from ringrift_operator.api.trainingrun import KIND as TRAININGRUN
from ringrift_operator.api.trainingrun import TERMINAL_PHASES
from ringrift_operator.kube.client import ApiError
from ringrift_operator.managers.trainingsync import (
    ConfigTrainingState,
    TrainingSyncVerdict,
    parse_run_index,
    plan_training_runs,
)
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.trainingdata import observe_data

log = logging.getLogger(__name__)
LABEL_AUTOPILOT = "ringrift.ai/autopilot"
IN_FLIGHT_SECONDS = 120.0  # a run created but never seen through the watch counts this long
_TERMINAL = {p.value for p in TERMINAL_PHASES}
_DONE_WELL = {"Complete", "Promoted"}


def _config_of(body: dict[str, Any]) -> str:
    spec = body.get("spec") or {}
    try:
        return config_key(spec.get("board", ""), int(spec.get("players", 2)))
    except (TypeError, ValueError):
        return ""


def _time(value: Any) -> float | None:
    return parse_rfc3339(str(value)).timestamp() if value else None


@dataclass
class TrainingSync:
    deps: Deps
    settings: AutopilotSettings
    created: int = 0
    verdicts: dict[str, TrainingSyncVerdict] = field(default_factory=dict)
    _in_flight: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> config, at

    def configs(self) -> tuple[str, ...]:
        t = self.settings.training
        return tuple(t.configs or self.settings.enabled_configs or ALL_CONFIG_KEYS)

    def _state(self, config: str, runs: list[dict[str, Any]], now: float) -> ConfigTrainingState:
        """The config's runs, as ``managers.trainingsync`` reads them (games left at 0)."""
        ns = self.settings.namespace
        mine = [b for b in runs if _config_of(b) == config]
        active = sum(
            1
            for b in mine
            if (b.get("metadata") or {}).get("namespace") == ns
            and (b.get("status") or {}).get("phase", "Pending") not in _TERMINAL
        )
        seen = {(b.get("metadata") or {}).get("name", "") for b in mine}
        for name, (of, at) in list(self._in_flight.items()):
            if name in seen or now - at > IN_FLIGHT_SECONDS:
                del self._in_flight[name]
            elif of == config:
                active += 1
        finished = [
            (s.get("completionTime") or "", int(s.get("gamesUsed") or 0))
            for s in ((b.get("status") or {}) for b in mine)
            if s.get("phase") in _DONE_WELL
        ]
        # The cooldown counts from the last start of any run of the config, and from the
        # creation of the autopilot's own: a run that ends Skipped or Failed without starting
        # must not make it create another every tick.
        times = [_time((b.get("status") or {}).get("startTime")) for b in mine]
        times += [
            _time((b.get("metadata") or {}).get("creationTimestamp"))
            for b in mine
            if ((b.get("metadata") or {}).get("labels") or {}).get(LABEL_AUTOPILOT) == "true"
        ]
        times += [s.started_at.timestamp() for s in self.deps.training_starts if s.config == config]
        times += [at for of, at in self._in_flight.values() if of == config]
        indexes = [parse_run_index((b.get("metadata") or {}).get("name", ""), config) for b in mine]
        indexes += [parse_run_index(n, config) for n in self._in_flight]
        baseline = max(finished)[1] if finished else 0
        return ConfigTrainingState(
            config=config, total_games=0, games_at_last_training=baseline,
            active_runs=active, last_started_at=max((t for t in times if t), default=None),
            highest_index=max((i for i in indexes if i is not None), default=0),
        )  # fmt: skip

    async def sync(self) -> None:
        t = self.settings.training
        now = self.deps.clock().timestamp()
        runs = [b for (kind, _, _), b in list(self.deps.resources.items()) if kind == TRAININGRUN]
        states = []
        for config in self.configs():
            state = self._state(config, runs, now)
            if state.active_runs == 0:
                count, _, _ = await observe_data(self.deps, config)
                state = ConfigTrainingState(
                    config=config, total_games=count.total,
                    games_at_last_training=state.games_at_last_training, active_runs=0,
                    last_started_at=state.last_started_at, highest_index=state.highest_index,
                )  # fmt: skip
            states.append(state)
        min_new = t.spec.get("minNewGames")
        plan, verdicts = plan_training_runs(
            states, now=now, min_new_games=int(min_new) if min_new is not None else None,
            cooldown_seconds=int(t.spec.get("cooldownSeconds", 300)),
        )  # fmt: skip
        self.verdicts = {v.config: v for v in verdicts}
        for run in plan:
            await self._create(run.config, run.name, run.min_new_games, now)
            log.info("training sync: %s for %s (%d new games)", run.name, run.config,
                     run.new_games)  # fmt: skip

    async def _create(self, config: str, name: str, min_new_games: int, now: float) -> None:
        board, players = parse_config_key(config)
        spec = {**self.settings.training.spec, "board": board.value, "players": players,
                "minNewGames": min_new_games}  # fmt: skip
        body = {
            "apiVersion": "ringrift.ai/v1alpha1",
            "kind": TRAININGRUN,
            "metadata": {
                "name": name,
                "labels": {
                    LABEL_AUTOPILOT: "true",
                    LABEL_MANAGED_BY: OPERATOR_NAME,
                    LABEL_CONFIG: config,
                },
                "annotations": {ANNOTATION_EPOCH: str(self.deps.epoch())},
            },
            "spec": spec,
        }
        try:
            await self.deps.client.create(
                f"/apis/ringrift.ai/v1alpha1/namespaces/{self.settings.namespace}/trainingruns",
                body,
            )
        except ApiError as e:
            if not e.conflict:
                raise
            # Created by an earlier tick that did not see its answer: the run exists.
            log.info("training sync: %s exists already", name)
        else:
            self.created += 1
            self.deps.metrics.autopilot_created(TRAININGRUN)
        self._in_flight[name] = (config, now)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.settings.training.enabled,
            "created": self.created,
            "configs": {
                c: {"create": v.create, "reason": v.reason}
                for c, v in sorted(self.verdicts.items())
            },
        }
