"""The resource models: defaults, bounds, enums, wire names, parse errors and derived phases."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ringrift_operator.api.conditions import Condition, ConditionStatus, set_condition
from ringrift_operator.api.meta import InvalidResourceError, ResourceBase, format_path, to_wire
from ringrift_operator.api.selfplayjob import (
    MAX_ATTEMPT_RECORDS,
    AttemptRecord,
    AttemptResult,
    SelfplayJobPhase,
    parse_selfplayjob,
    set_attempt_record,
)
from ringrift_operator.api.selfplayjob import derive_phase as selfplay_phase
from ringrift_operator.api.syncplan import SyncPlanState, derive_state, parse_syncplan
from ringrift_operator.api.trainingrun import TrainingRunPhase, parse_trainingrun
from ringrift_operator.api.trainingrun import derive_phase as training_phase

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
Parse = Callable[[Mapping[str, Any]], ResourceBase]


def body(kind: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ringrift.ai/v1alpha1",
        "kind": kind,
        "metadata": {"name": "test", "namespace": "ns", "uid": "u-1", "generation": 2},
        "spec": spec,
        **extra,
    }


def spj(**spec: Any) -> dict[str, Any]:
    return body("SelfplayJob", {"board": "square8", "engineMode": "heuristic", "games": 10, **spec})


def tr(**spec: Any) -> dict[str, Any]:
    return body("TrainingRun", {"board": "hex8", **spec})


def sp(**spec: Any) -> dict[str, Any]:
    return body("SyncPlan", {"configs": ["square8_2p"], "targets": {"topTrainingNodes": 2}, **spec})


# --- defaults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "make", "attribute", "expected"),
    [
        pytest.param(parse_selfplayjob, spj, "players", 2, id="spj-players-2"),
        pytest.param(parse_selfplayjob, spj, "gpus", 1, id="spj-gpus-1"),
        pytest.param(
            parse_selfplayjob, spj, "dispatch_timeout_seconds", 300, id="spj-dispatch-300"
        ),
        pytest.param(parse_selfplayjob, spj, "backoff_limit", 3, id="spj-backoff-3"),
        pytest.param(parse_selfplayjob, spj, "suspend", False, id="spj-not-suspended"),
        pytest.param(parse_selfplayjob, spj, "active_deadline_seconds", None, id="spj-no-deadline"),
        pytest.param(parse_selfplayjob, spj, "model", None, id="spj-model-promoted"),
        pytest.param(parse_trainingrun, tr, "cooldown_seconds", 300, id="tr-cooldown-300"),
        pytest.param(parse_trainingrun, tr, "min_memory_gib", 8, id="tr-memory-8"),
        pytest.param(parse_trainingrun, tr, "nodes", 1, id="tr-one-node"),
        pytest.param(parse_trainingrun, tr, "auto_promote", True, id="tr-auto-promote"),
        pytest.param(parse_trainingrun, tr, "backoff_limit", 3, id="tr-backoff-3"),
        pytest.param(parse_syncplan, sp, "max_files_per_job", 50, id="sp-max-files-50"),
        pytest.param(parse_syncplan, sp, "mtime_tolerance_seconds", 60, id="sp-mtime-60"),
        pytest.param(parse_syncplan, sp, "manifest_max_age_seconds", 300, id="sp-manifest-300"),
        pytest.param(parse_syncplan, sp, "interval_seconds", 0, id="sp-once"),
    ],
)
def test_spec_defaults(
    parse: Parse, make: Callable[[], dict[str, Any]], attribute: str, expected: object
) -> None:
    assert getattr(parse(make()).spec, attribute) == expected  # type: ignore[attr-defined]


def test_gauntlet_defaults() -> None:
    gauntlet = parse_trainingrun(tr()).spec.gauntlet
    assert (gauntlet.games, gauntlet.shards, gauntlet.promotion_win_rate_percent) == (100, 1, 55)
    assert gauntlet.opponents == ["promoted", "heuristic", "random"]


def test_default_lists_are_not_shared() -> None:
    a, b = parse_trainingrun(tr()), parse_trainingrun(tr())
    a.spec.gauntlet.opponents.append("x")
    assert "x" not in b.spec.gauntlet.opponents


@pytest.mark.parametrize(
    ("parse", "make", "phase_attr", "expected"),
    [
        pytest.param(parse_selfplayjob, spj, "phase", SelfplayJobPhase.PENDING, id="spj-pending"),
        pytest.param(parse_trainingrun, tr, "phase", TrainingRunPhase.PENDING, id="tr-pending"),
        pytest.param(parse_syncplan, sp, "state", SyncPlanState.IDLE, id="sp-idle"),
    ],
)
def test_missing_status_defaults(
    parse: Parse, make: Callable[[], dict[str, Any]], phase_attr: str, expected: object
) -> None:
    status = parse(make()).status  # type: ignore[attr-defined]
    assert getattr(status, phase_attr) == expected
    assert status.conditions == []
    assert status.observed_generation == 0


# --- invalid input: clear errors with the wire path ---------------------------------------------


@pytest.mark.parametrize(
    ("parse", "document", "path"),
    [
        pytest.param(parse_selfplayjob, spj(players=5), "spec.players", id="players-above-4"),
        pytest.param(parse_selfplayjob, spj(players=1), "spec.players", id="players-below-2"),
        pytest.param(parse_selfplayjob, spj(games=0), "spec.games", id="games-zero"),
        pytest.param(parse_selfplayjob, spj(games=10**7), "spec.games", id="games-too-many"),
        pytest.param(parse_selfplayjob, spj(gpus=9), "spec.gpus", id="gpus-above-8"),
        pytest.param(parse_selfplayjob, spj(board="chess"), "spec.board", id="bad-board"),
        pytest.param(
            parse_selfplayjob, spj(engineMode="alphazero"), "spec.engineMode", id="bad-engine"
        ),
        pytest.param(parse_selfplayjob, spj(games=1.5), "spec.games", id="float-games"),
        pytest.param(parse_selfplayjob, spj(model="x" * 2000), "spec.model", id="model-too-long"),
        pytest.param(
            parse_selfplayjob, spj(backoffLimit=-1), "spec.backoffLimit", id="negative-backoff"
        ),
        pytest.param(
            parse_selfplayjob,
            spj(dispatchTimeoutSeconds=0),
            "spec.dispatchTimeoutSeconds",
            id="zero-dispatch-timeout",
        ),
        pytest.param(
            parse_selfplayjob,
            spj(placement={"minGpuClass": "v100"}),
            "spec.placement.minGpuClass",
            id="bad-gpu-class",
        ),
        pytest.param(
            parse_selfplayjob,
            spj(placement={"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}),
            "spec.placement.tolerations[0]",
            id="exists-with-value",
        ),
        pytest.param(
            parse_selfplayjob,
            spj(placement={"tolerations": [{"operator": "Equal"}]}),
            "spec.placement.tolerations[0]",
            id="empty-key-equal",
        ),
        pytest.param(
            parse_selfplayjob,
            spj(placement={"nodeSelector": {f"k{i}": "v" for i in range(40)}}),
            "spec.placement.nodeSelector",
            id="too-many-labels",
        ),
        pytest.param(
            parse_selfplayjob,
            spj(engineMode="gumbel-mcts", gpus=0),
            "spec",
            id="gpu-engine-without-gpus",
        ),
        pytest.param(parse_selfplayjob, spj(gamez=10), "spec.gamez", id="unknown-field"),
        pytest.param(
            parse_trainingrun,
            tr(gauntlet={"games": 2, "shards": 4}),
            "spec.gauntlet",
            id="shards-above-games",
        ),
        pytest.param(
            parse_trainingrun,
            tr(gauntlet={"promotionWinRatePercent": 101}),
            "spec.gauntlet.promotionWinRatePercent",
            id="win-rate-above-100",
        ),
        pytest.param(
            parse_trainingrun,
            tr(gauntlet={"opponents": []}),
            "spec.gauntlet.opponents",
            id="no-opponents",
        ),
        pytest.param(parse_trainingrun, tr(nodes=0), "spec.nodes", id="zero-nodes"),
        pytest.param(parse_trainingrun, tr(nodes=2, gpus=0), "spec", id="distributed-on-cpu"),
        pytest.param(parse_trainingrun, tr(minMemoryGiB=0), "spec.minMemoryGiB", id="no-memory"),
        pytest.param(
            parse_syncplan, sp(configs=["square8_5p"]), "spec.configs[0]", id="bad-config-key"
        ),
        pytest.param(parse_syncplan, sp(configs=[]), "spec.configs", id="no-configs"),
        pytest.param(
            parse_syncplan, sp(configs=["hex8_2p", "hex8_2p"]), "spec", id="repeated-config"
        ),
        pytest.param(parse_syncplan, sp(targets={}), "spec.targets", id="no-target"),
        pytest.param(
            parse_syncplan,
            sp(targets={"nodeNames": ["a"], "topTrainingNodes": 1}),
            "spec.targets",
            id="two-targets",
        ),
        pytest.param(
            parse_syncplan,
            sp(targets={"nodeNames": ["Bad_Name"]}),
            "spec.targets.nodeNames[0]",
            id="bad-node-name",
        ),
        pytest.param(
            parse_syncplan, sp(maxFilesPerJob=0), "spec.maxFilesPerJob", id="zero-files-per-job"
        ),
        pytest.param(parse_syncplan, body("SyncPlan", {}), "spec.configs", id="missing-configs"),
        pytest.param(
            parse_syncplan, {**sp(), "metadata": {"name": "n" * 64}}, "", id="name-too-long"
        ),
        pytest.param(parse_syncplan, {"kind": "SyncPlan"}, "spec", id="missing-spec"),
        pytest.param(
            parse_syncplan, {**sp(), "apiVersion": "v1"}, "apiVersion", id="wrong-api-version"
        ),
    ],
)
def test_invalid_input_names_the_field(parse: Parse, document: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        parse(document)
    paths = [e.path for e in caught.value.errors]
    assert any(p == path or p.startswith(path) for p in paths), paths
    text = str(caught.value)
    assert text.startswith(f"invalid {document.get('kind')} ")
    assert path in text
    assert len(caught.value.summary(max_length=80)) <= 80


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(InvalidResourceError, match="expected SelfplayJob"):
        parse_selfplayjob(tr())


def test_gpu_engine_error_names_spec_gpus() -> None:
    with pytest.raises(InvalidResourceError, match=r"spec\.gpus must be at least 1"):
        parse_selfplayjob(spj(engineMode="policy-only", gpus=0))


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        pytest.param(("spec", "players"), "spec.players", id="nested"),
        pytest.param(("spec", "tolerations", 0, "key"), "spec.tolerations[0].key", id="list"),
        pytest.param((), "", id="root"),
    ],
)
def test_format_path(loc: tuple[int | str, ...], expected: str) -> None:
    assert format_path(loc) == expected


# --- wire names -----------------------------------------------------------------------------


def full_spj() -> dict[str, Any]:
    return spj(
        players=3,
        engineMode="gumbel-mcts",
        gpus=2,
        model="file:///data/models/square8_3p/g1.pt",
        placement={
            "minGpuClass": "l40s",
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [
                {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}
            ],
        },
        dispatchTimeoutSeconds=60,
        activeDeadlineSeconds=600,
        backoffLimit=1,
        suspend=True,
    ) | {
        "status": {
            "observedGeneration": 2,
            "phase": "Running",
            "conditions": [
                {
                    "type": "Running",
                    "status": "True",
                    "reason": "PodRunning",
                    "message": "",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                    "observedGeneration": 2,
                }
            ],
            "config": "square8_3p",
            "node": "gpu-1",
            "powerScore": 900,
            "pod": "test-a1",
            "attempts": 1,
            "gamesCompleted": 0,
            "startTime": "2026-01-02T03:04:05Z",
            "epoch": 4,
            "recentAttempts": [
                {"attempt": 1, "node": "gpu-1", "pod": "test-a1", "result": "Running"}
            ],
        }
    }


def full_tr() -> dict[str, Any]:
    return tr(
        players=4,
        minNewGames=10,
        cooldownSeconds=0,
        minMemoryGiB=16,
        gpus=2,
        nodes=2,
        baseModel="file:///m.pt",
        gauntlet={"games": 10, "opponents": ["random"], "shards": 2, "promotionWinRatePercent": 50},
        autoPromote=False,
        backoffLimit=0,
        pendingDeadlineSeconds=10,
        activeDeadlineSeconds=20,
    ) | {
        "status": {
            "phase": "Promoted",
            "config": "hex8_4p",
            "dataHash": "ab" * 32,
            "gamesUsed": 12,
            "node": "a",
            "nodes": ["a", "b"],
            "pods": ["p-0", "p-1"],
            "model": {"uri": "file:///m2.pt", "sha256": "0" * 64, "generation": 3},
            "gauntlet": {
                "wins": 7,
                "losses": 2,
                "draws": 1,
                "winRatePercent": 75,
                "eloDelta": 190,
                "eloLow": 20,
                "eloHigh": 400,
                "shardsCompleted": 2,
            },
            "completionTime": "2026-01-02T03:04:05+00:00",
        }
    }


def full_sp() -> dict[str, Any]:
    return sp(targets={"selector": {"matchLabels": {"role": "trainer"}}}, intervalSeconds=60) | {
        "status": {
            "state": "Retry",
            "targetNodes": ["a"],
            "peers": [
                {"node": "b", "files": 3, "bytes": 300, "manifestAgeSeconds": 4},
                {"node": "c", "files": 0, "bytes": 0, "error": "connection refused"},
            ],
            "missingFiles": 3,
            "transfers": [
                {
                    "name": "a-from-b-1",
                    "target": "a",
                    "source": "b",
                    "files": 3,
                    "bytes": 300,
                    "state": "Failed",
                    "message": "timeout",
                }
            ],
            "filesSynced": 10,
            "bytesSynced": 1000,
            "retryAfter": "2026-01-02T03:04:06Z",
            "attempts": 1,
            "lastSyncTime": "2026-01-02T03:00:00Z",
        }
    }


@pytest.mark.parametrize(
    ("parse", "make"),
    [
        pytest.param(parse_selfplayjob, full_spj, id="selfplayjob"),
        pytest.param(parse_trainingrun, full_tr, id="trainingrun"),
        pytest.param(parse_syncplan, full_sp, id="syncplan"),
    ],
)
def test_wire_round_trip(parse: Parse, make: Callable[[], dict[str, Any]]) -> None:
    document = make()
    parsed = parse(document)
    wire = to_wire(parsed)
    for part in ("spec", "status"):
        for key, value in document[part].items():
            assert wire[part][key] == value, (part, key)
    assert parse(wire) == parsed


def walk_keys(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            # Label maps hold user keys, not field names.
            if key not in {"nodeSelector", "matchLabels", "labels", "annotations"}:
                yield from walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


@pytest.mark.parametrize("make", [full_spj, full_tr, full_sp], ids=["spj", "tr", "sp"])
def test_wire_keys_are_camel_case(make: Callable[[], dict[str, Any]]) -> None:
    parse: dict[str, Parse] = {
        "SelfplayJob": parse_selfplayjob,
        "TrainingRun": parse_trainingrun,
        "SyncPlan": parse_syncplan,
    }
    document = make()
    wire = to_wire(parse[document["kind"]](document))
    assert all("_" not in key for key in walk_keys(wire))


def test_python_names_are_accepted_too() -> None:
    document = body(
        "SelfplayJob",
        {"board": "hex8", "engine_mode": "mcts", "games": 1, "dispatch_timeout_seconds": 9},
    )
    job = parse_selfplayjob(document)
    assert job.spec.dispatch_timeout_seconds == 9


def test_min_memory_gib_wire_name() -> None:
    assert "minMemoryGiB" in to_wire(parse_trainingrun(tr()).spec)


def test_kopf_style_mapping_is_accepted() -> None:
    class View(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> Any:
            return self._data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    document = spj()
    document["spec"] = View(document["spec"])
    assert parse_selfplayjob(View(document)).spec.games == 10


def test_parse_does_not_mutate_body() -> None:
    document = full_spj()
    before = copy.deepcopy(document)
    parse_selfplayjob(document)
    assert document == before


def test_metadata_access_and_owner_reference() -> None:
    job = parse_selfplayjob(
        spj()
        | {
            "metadata": {
                "name": "j",
                "namespace": "ns",
                "uid": "u",
                "generation": 5,
                "resourceVersion": "9",
                "managedFields": [{"x": 1}],
            }
        }
    )
    assert (job.name, job.namespace, job.uid, job.generation) == ("j", "ns", "u", 5)
    ref = to_wire(job.owner_reference())
    assert ref == {
        "apiVersion": "ringrift.ai/v1alpha1",
        "kind": "SelfplayJob",
        "name": "j",
        "uid": "u",
        "controller": True,
        "blockOwnerDeletion": True,
    }


# --- derived phases ----------------------------------------------------------------------------


def conditions(**statuses: str) -> list[Condition]:
    out: list[Condition] = []
    for type_, status in statuses.items():
        out = set_condition(out, type=type_, status=status, reason="R", generation=1, now=NOW)
    return out


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param({}, SelfplayJobPhase.PENDING, id="nothing-pending"),
        pytest.param({"Scheduled": "False"}, SelfplayJobPhase.PENDING, id="unscheduled"),
        pytest.param({"Scheduled": "True"}, SelfplayJobPhase.PENDING, id="bound-not-running"),
        pytest.param(
            {"Scheduled": "True", "Running": "True"}, SelfplayJobPhase.RUNNING, id="running"
        ),
        pytest.param(
            {"Running": "True", "Suspended": "True"},
            SelfplayJobPhase.SUSPENDED,
            id="suspended-beats-running",
        ),
        pytest.param(
            {"Running": "False", "Complete": "True"}, SelfplayJobPhase.COMPLETE, id="complete"
        ),
        pytest.param(
            {"Failed": "True", "Suspended": "True"},
            SelfplayJobPhase.FAILED,
            id="failed-beats-suspended",
        ),
        pytest.param({"Expired": "True"}, SelfplayJobPhase.EXPIRED, id="expired"),
        pytest.param(
            {"Complete": "True", "Failed": "True"},
            SelfplayJobPhase.COMPLETE,
            id="complete-beats-failed",
        ),
    ],
)
def test_selfplayjob_phase(statuses: dict[str, str], expected: SelfplayJobPhase) -> None:
    assert selfplay_phase(conditions(**statuses)) is expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param({}, TrainingRunPhase.PENDING, id="nothing-pending"),
        pytest.param({"DataReady": "False"}, TrainingRunPhase.PENDING, id="waiting-for-data"),
        pytest.param({"DataReady": "True"}, TrainingRunPhase.EXPORTING, id="exporting"),
        pytest.param(
            {"DataReady": "True", "Exported": "True"}, TrainingRunPhase.TRAINING, id="training"
        ),
        pytest.param(
            {"Exported": "True", "Trained": "True", "GauntletPassed": "Unknown"},
            TrainingRunPhase.EVALUATING,
            id="evaluating",
        ),
        pytest.param(
            {"Trained": "True", "GauntletPassed": "False", "Complete": "True"},
            TrainingRunPhase.COMPLETE,
            id="complete-not-promoted",
        ),
        pytest.param(
            {"GauntletPassed": "True", "Promoted": "True"}, TrainingRunPhase.PROMOTED, id="promoted"
        ),
        pytest.param({"Exported": "True", "Failed": "True"}, TrainingRunPhase.FAILED, id="failed"),
        pytest.param(
            {"DataReady": "False", "Expired": "True"}, TrainingRunPhase.EXPIRED, id="expired"
        ),
        pytest.param(
            {"DataReady": "True", "Skipped": "True"}, TrainingRunPhase.SKIPPED, id="skipped"
        ),
    ],
)
def test_trainingrun_phase(statuses: dict[str, str], expected: TrainingRunPhase) -> None:
    assert training_phase(conditions(**statuses)) is expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param({}, SyncPlanState.IDLE, id="nothing-idle"),
        pytest.param({"ManifestsCollected": "Unknown"}, SyncPlanState.COLLECTING, id="collecting"),
        pytest.param(
            {"ManifestsCollected": "True", "Synced": "False"}, SyncPlanState.SYNCING, id="syncing"
        ),
        pytest.param(
            {"ManifestsCollected": "True", "Synced": "True"}, SyncPlanState.SYNCED, id="synced"
        ),
        pytest.param({"ManifestsCollected": "False"}, SyncPlanState.IDLE, id="manifests-expired"),
        pytest.param(
            {"ManifestsCollected": "True", "Retrying": "True", "Synced": "True"},
            SyncPlanState.RETRY,
            id="retry-beats-synced",
        ),
        pytest.param(
            {"Retrying": "False", "ManifestsCollected": "True"},
            SyncPlanState.SYNCING,
            id="recovered",
        ),
    ],
)
def test_syncplan_state(statuses: dict[str, str], expected: SyncPlanState) -> None:
    assert derive_state(conditions(**statuses)) is expected


# --- attempt records ---------------------------------------------------------------------------


def test_set_attempt_record_merges_by_attempt() -> None:
    first = AttemptRecord(attempt=1, node="a", pod="p1")
    done = first.model_copy(update={"result": AttemptResult.FAILED, "reason": "PodFailed"})
    records = set_attempt_record([first], done)
    assert records == [done]


def test_set_attempt_record_keeps_the_newest() -> None:
    records: list[AttemptRecord] = []
    for n in (3, 1, 2, *range(4, 15)):
        records = set_attempt_record(records, AttemptRecord(attempt=n))
    assert [r.attempt for r in records] == list(range(15 - MAX_ATTEMPT_RECORDS, 15))


def test_condition_status_enum_values() -> None:
    assert [s.value for s in ConditionStatus] == ["True", "False", "Unknown"]
