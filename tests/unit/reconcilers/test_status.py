"""The shared status writer feeds the outcome and games counters once per transition, and only
for a status the API server accepted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from ringrift_operator.api.selfplayjob import SelfplayJobPhase, SelfplayJobStatus, parse_selfplayjob
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.cache import ClusterCache
from ringrift_operator.kube.client import ApiError, KubeClient
from ringrift_operator.reconcilers.deps import Deps, workload_settings
from ringrift_operator.reconcilers.status import write_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JOB = parse_selfplayjob({
    "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
    "metadata": {"name": "j", "namespace": "games", "uid": "u1", "generation": 1},
    "spec": {"board": "hex8", "players": 2, "games": 10, "engineMode": "heuristic"},
})  # fmt: skip


class Client:
    def __init__(self, *, gone: bool = False) -> None:
        self.gone = gone
        self.patches: list[dict[str, Any]] = []

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.gone:
            raise ApiError(404, "NotFound", path)
        self.patches.append(body)
        return {"metadata": {"name": "j", "namespace": "games"}, **body}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return body


def deps_with(client: Client) -> tuple[Deps, list[tuple[str, Any]]]:
    settings = OperatorSettings()
    deps = Deps(client=cast(KubeClient, client), cache=ClusterCache(), settings=settings,
                workload=workload_settings(settings), clock=lambda: NOW)  # fmt: skip
    seen: list[tuple[str, Any]] = []
    deps.metrics.job_outcome = lambda kind, outcome: seen.append(("outcome", (kind, outcome)))
    deps.metrics.games = lambda config, n: seen.append(("games", (config, n)))
    return deps, seen


def status(phase: SelfplayJobPhase, games: int) -> SelfplayJobStatus:
    return SelfplayJobStatus(phase=phase, games_completed=games, config="hex8_2p")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (status(SelfplayJobPhase.RUNNING, 0), status(SelfplayJobPhase.COMPLETE, 10),
         [("outcome", ("SelfplayJob", "Complete")), ("games", ("hex8_2p", 10))]),
        (status(SelfplayJobPhase.RUNNING, 4), status(SelfplayJobPhase.FAILED, 4),
         [("outcome", ("SelfplayJob", "Failed"))]),
        (status(SelfplayJobPhase.RUNNING, 4), status(SelfplayJobPhase.RUNNING, 7),
         [("games", ("hex8_2p", 3))]),
        (status(SelfplayJobPhase.PENDING, 0), status(SelfplayJobPhase.RUNNING, 0), []),
    ],
)  # fmt: skip
async def test_a_written_transition_counts_once(
    old: SelfplayJobStatus, new: SelfplayJobStatus, expected: list[tuple[str, Any]]
) -> None:
    deps, seen = deps_with(client := Client())
    assert await write_status(deps, JOB, plural="selfplayjobs", old=old, new=new, events=[])
    # The same status again (the API server holds it now) writes and counts nothing.
    assert await write_status(deps, JOB, plural="selfplayjobs", old=new, new=new, events=[])
    assert seen == expected
    assert len(client.patches) == 1


async def test_a_status_not_written_counts_nothing() -> None:
    deps, seen = deps_with(Client(gone=True))
    done = status(SelfplayJobPhase.COMPLETE, 10)
    assert not await write_status(
        deps, JOB, plural="selfplayjobs", old=status(SelfplayJobPhase.RUNNING, 0), new=done,
        events=[],
    )  # fmt: skip
    assert seen == []
