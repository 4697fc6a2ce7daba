"""The SyncPlan decision (managers.syncplan): targets, judging a round, the workflow's states,
Events once per round, retry backoff, re-sync intervals and restarts, over a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringrift_operator.api.conditions import ConditionStatus, get_condition
from ringrift_operator.api.conditions import SyncPlanReason as R
from ringrift_operator.api.syncplan import (
    MAX_TRANSFERS,
    SyncPlan,
    SyncPlanState,
    TransferState,
    derive_state,
    parse_syncplan,
)
from ringrift_operator.managers.nodes import GIB, LABEL_GPU_PRODUCT, NodeInfo
from ringrift_operator.managers.syncplan import (
    Action,
    Decision,
    PeerView,
    RoundOutcome,
    RoundPhase,
    RoundView,
    TransferView,
    build_transfer_views,
    decide_syncplan,
    judge_round,
    next_round,
    resolve_targets,
)
from ringrift_operator.managers.syncplanning import (
    FileEntry,
    SyncSettings,
    build_manifest,
    plan_sync,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = NOW - timedelta(seconds=30)  # when the round under test started
OK = RoundOutcome(True, R.ALL_FILES_PRESENT, "every target holds every file")
BAD = RoundOutcome(False, R.TRANSFER_FAILED, "1 of 2 transfers failed")


# --- builders ----------------------------------------------------------------------------------


def plan(*, generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> SyncPlan:
    body: dict[str, Any] = {
        "apiVersion": "ringrift.ai/v1alpha1",
        "kind": "SyncPlan",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "generation": generation},
        "spec": {"configs": ["square8_2p"], "targets": {"nodeNames": ["t1", "t2"]}, **spec},
    }
    if status is not None:
        body["status"] = status
    return parse_syncplan(body)


def transfer(name: str, state: TransferState, *, done: int = 0) -> TransferView:
    return TransferView(
        name=name,
        target="t1",
        source="s1",
        files=3,
        bytes=300,
        state=state,
        files_done=done,
        bytes_done=done * 100,
    )


def round_view(**fields: Any) -> RoundView:
    base: dict[str, Any] = {
        "number": 1,
        "generation": 1,
        "started_at": T0,
        "targets": ("t1", "t2"),
        "peers": (PeerView("s1", files=3),),
    }
    return RoundView(**{**base, **fields})


def done(outcome: RoundOutcome = OK, *, ended: datetime = NOW, **fields: Any) -> RoundView:
    return round_view(phase=RoundPhase.DONE, outcome=outcome, finished_at=ended, **fields)


def conditions(decision: Decision) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in decision.status.conditions}


def gpu_node(
    name: str,
    product: str,
    *,
    memory_gib: int = 64,
    ready: bool = True,
    labels: dict[str, str] | None = None,
) -> NodeInfo:
    return NodeInfo(
        name=name,
        labels={LABEL_GPU_PRODUCT: product, **(labels or {})},
        gpu_allocatable=8,
        cpu_millis=64_000,
        memory_bytes=memory_gib * GIB,
        ready=ready,
    )


# --- targets -----------------------------------------------------------------------------------

NODES = [
    gpu_node("a100-0", "NVIDIA-A100-SXM4-80GB", labels={"pool": "train"}),
    gpu_node("h100-0", "NVIDIA-H100-80GB-HBM3", labels={"pool": "train"}),
    gpu_node("h100-1", "NVIDIA-H100-80GB-HBM3", labels={"pool": "train"}, ready=False),
    gpu_node("l40s-0", "NVIDIA-L40S", labels={"pool": "selfplay"}),
    gpu_node("tiny-0", "NVIDIA-H100-80GB-HBM3", memory_gib=4),
]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        pytest.param(
            {"nodeNames": ["l40s-0", "gone", "a100-0"]},
            ("l40s-0", "a100-0"),
            id="names-in-spec-order-missing-skipped",
        ),
        pytest.param(
            {"selector": {"matchLabels": {"pool": "train"}}},
            ("a100-0", "h100-0"),
            id="selector-ready-matching-nodes-by-name",
        ),
        pytest.param({"selector": {"matchLabels": {"pool": "none"}}}, (), id="selector-no-match"),
        pytest.param(
            {"topTrainingNodes": 2}, ("h100-0", "a100-0"), id="top-n-strongest-ready-with-memory"
        ),
        pytest.param(
            {"topTrainingNodes": 9}, ("h100-0", "a100-0", "l40s-0"), id="top-n-more-than-there-are"
        ),
    ],
)
def test_resolve_targets(targets: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert resolve_targets(plan(targets=targets).spec.targets, nodes=NODES) == expected


# --- judging a round ----------------------------------------------------------------------------


def verification(missing: int, *, skipped: bool = False) -> Any:
    files = [FileEntry(f"games/square8_2p/{i}.jsonl", 1, 1.0, f"{i:064x}") for i in range(missing)]
    manifests = [
        build_manifest("s1", files, collected_at=100.0),
        build_manifest("t1", [], collected_at=100.0),
    ]
    targets = ["t1", "t9"] if skipped else ["t1"]
    return plan_sync(manifests, targets=targets, now=100.0)


@pytest.mark.parametrize(
    ("kwargs", "ok", "reason", "text"),
    [
        pytest.param({"targets": ()}, False, "NoTargets", "no node matches", id="no-targets"),
        pytest.param(
            {"collected": 0, "errors": {"a": "refused"}},
            False,
            "NoPeers",
            "a (refused)",
            id="no-agent-answered",
        ),
        pytest.param(
            {"transfers": (transfer("r1-001", TransferState.FAILED),)},
            False,
            "TransferFailed",
            "1 of 1 transfers failed",
            id="a-transfer-failed",
        ),
        pytest.param(
            {"errors": {"s2": "timed out"}},
            False,
            "PeerUnreachable",
            "s2 (timed out)",
            id="one-peer-down-never-fails-only-retries",
        ),
        pytest.param(
            {"verification": verification(2)},
            False,
            "TransferFailed",
            "2 files still missing",
            id="files-still-missing",
        ),
        pytest.param(
            {"verification": verification(0, skipped=True)},
            False,
            "TransferFailed",
            "t9 (NoManifest)",
            id="a-target-not-verified",
        ),
        pytest.param(
            {"transfers": (transfer("r1-001", TransferState.SUCCEEDED, done=3),)},
            True,
            "AllFilesPresent",
            "3 files moved",
            id="all-present",
        ),
    ],
)
def test_judge_round(kwargs: dict[str, Any], ok: bool, reason: str, text: str) -> None:
    args: dict[str, Any] = {
        "targets": ("t1",),
        "errors": {},
        "collected": 2,
        "transfers": (),
        "verification": verification(0),
        **kwargs,
    }
    outcome = judge_round(**args)
    assert (outcome.ok, outcome.reason.value) == (ok, reason)
    assert text in outcome.message


def test_transfer_views_are_named_by_round_and_index() -> None:
    files = [FileEntry(f"games/square8_2p/{i}.jsonl", 10, 1.0, f"{i:064x}") for i in range(5)]
    manifests = [
        build_manifest("s1", files, collected_at=100.0),
        build_manifest("t1", [], collected_at=100.0),
    ]
    planned = plan_sync(
        manifests, targets=["t1"], now=100.0, settings=SyncSettings(max_files_per_job=2)
    )
    views = build_transfer_views(planned, round_number=4)
    assert [(v.name, v.files, v.bytes, v.state) for v in views] == [
        ("r4-001", 2, 20, TransferState.PENDING),
        ("r4-002", 2, 20, TransferState.PENDING),
        ("r4-003", 1, 10, TransferState.PENDING),
    ]


# --- the workflow --------------------------------------------------------------------------------


def test_a_new_plan_starts_a_round_and_shows_collecting() -> None:
    d = decide_syncplan(plan(), round=None, now=NOW)
    assert d.action is Action.START_ROUND
    assert d.status.state is SyncPlanState.COLLECTING
    assert d.status.observed_generation == 1
    assert conditions(d)["ManifestsCollected"] == ("Unknown", "Collecting")
    assert "Retrying" not in conditions(d)
    assert d.requeue_after == 1.0


def test_a_running_round_is_followed_every_second() -> None:
    collecting = decide_syncplan(plan(), round=round_view(), now=NOW)
    assert (collecting.action, collecting.status.state) == (Action.NONE, SyncPlanState.COLLECTING)
    running = round_view(
        phase=RoundPhase.SYNCING,
        base_files=10,
        base_bytes=1000,
        missing_files=6,
        transfers=(
            transfer("r1-001", TransferState.SUCCEEDED, done=3),
            transfer("r1-002", TransferState.RUNNING),
        ),
    )
    d = decide_syncplan(plan(), round=running, now=NOW)
    assert d.status.state is SyncPlanState.SYNCING
    assert d.requeue_after == 1.0
    assert not d.events
    assert (d.status.files_synced, d.status.bytes_synced, d.status.missing_files) == (13, 1300, 6)
    assert [(t.name, t.state) for t in d.status.transfers] == [
        ("r1-001", TransferState.SUCCEEDED),
        ("r1-002", TransferState.RUNNING),
    ]
    assert conditions(d)["Synced"] == ("False", "TransfersPending")
    assert d.status.target_nodes == ["t1", "t2"]
    assert d.status.peers[0].node == "s1"


def test_a_good_round_makes_the_plan_synced_with_one_event() -> None:
    r = done(transfers=(transfer("r1-001", TransferState.SUCCEEDED, done=3),))
    d = decide_syncplan(plan(), round=r, now=NOW)
    assert d.status.state is SyncPlanState.SYNCED
    assert d.status.last_sync_time == "2026-01-01T12:00:00Z"
    assert (d.status.attempts, d.status.retry_after, d.status.files_synced) == (0, None, 3)
    assert [(e.type, e.reason) for e in d.events] == [("Normal", "Synced")]
    assert "moved 3 files (300 bytes) in 1 transfers" in d.events[0].message
    assert d.requeue_after is None  # intervalSeconds 0: once
    written = plan(status=d.status.model_dump(mode="json", by_alias=True, exclude_none=True))
    later = NOW + timedelta(hours=1)
    again = decide_syncplan(written, round=replace(r, reported=True), now=later)
    assert again.status == d.status


def test_synced_with_an_interval_starts_the_next_round_when_it_is_due() -> None:
    p = plan(intervalSeconds=60)
    r = done(reported=True)
    early = decide_syncplan(p, round=r, now=NOW + timedelta(seconds=20))
    assert early.action is Action.NONE
    assert early.requeue_after == pytest.approx(40)
    due = decide_syncplan(p, round=r, now=NOW + timedelta(seconds=60))
    assert due.action is Action.START_ROUND
    assert "intervalSeconds" in due.why
    assert due.status.state is SyncPlanState.COLLECTING


def test_a_due_round_waits_for_the_previous_rounds_event() -> None:
    d = decide_syncplan(plan(intervalSeconds=1), round=done(), now=NOW + timedelta(seconds=5))
    assert d.action is Action.NONE
    assert d.events
    assert d.requeue_after == 0


@pytest.mark.parametrize(
    ("base_attempts", "delay"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (40, 30)],
    ids=lambda v: str(v),
)
def test_a_bad_round_retries_with_backoff_never_fails(base_attempts: int, delay: int) -> None:
    d = decide_syncplan(plan(), round=done(BAD, base_attempts=base_attempts), now=NOW)
    assert d.status.state is SyncPlanState.RETRY
    assert d.status.attempts == base_attempts + 1
    assert d.status.retry_after == (NOW + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert d.requeue_after == pytest.approx(delay)
    assert conditions(d)["Retrying"] == ("True", "TransferFailed")
    assert conditions(d)["ManifestsCollected"] == ("True", "Collected")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "SyncRetry")]
    assert f"retry {base_attempts + 1} in {delay}s" in d.status.message  # type: ignore[operator]


def test_a_round_where_no_agent_answered_says_manifests_were_not_collected() -> None:
    none = RoundOutcome(False, R.NO_PEERS, "no agent answered", collected=False)
    d = decide_syncplan(plan(), round=done(none), now=NOW)
    assert conditions(d)["ManifestsCollected"] == ("False", "NoPeers")
    assert d.status.state is SyncPlanState.RETRY


def test_the_retry_starts_when_due_and_counts_on() -> None:
    r = done(BAD, base_attempts=2, reported=True)
    assert decide_syncplan(plan(), round=r, now=NOW + timedelta(seconds=3)).action is Action.NONE
    d = decide_syncplan(plan(), round=r, now=NOW + timedelta(seconds=4))
    assert d.action is Action.START_ROUND
    assert next_round(plan(), r, now=NOW).base_attempts == 3
    assert next_round(plan(), r, now=NOW).number == 2


def test_success_after_retries_clears_retrying_as_recovered() -> None:
    failed = decide_syncplan(plan(), round=done(BAD), now=NOW).status
    p = plan(status=failed.model_dump(mode="json", by_alias=True, exclude_none=True))
    d = decide_syncplan(p, round=done(OK, number=2, base_attempts=1), now=NOW)
    assert conditions(d)["Retrying"] == ("False", "Recovered")
    assert d.status.state is SyncPlanState.SYNCED
    assert d.status.attempts == 0


def test_a_spec_change_restarts_a_running_round() -> None:
    d = decide_syncplan(plan(generation=2), round=round_view(phase=RoundPhase.SYNCING), now=NOW)
    assert d.action is Action.START_ROUND
    assert "spec changed" in d.why or "first round" in d.why
    assert d.status.observed_generation == 2


def status_of(state: str, **fields: Any) -> dict[str, Any]:
    """A status as an earlier operator process left it."""
    p = plan()
    r = {
        "Synced": done(OK, reported=True),
        "Retry": done(BAD, reported=True),
        "Syncing": round_view(phase=RoundPhase.SYNCING),
    }[state]
    s = decide_syncplan(p, round=r, now=NOW).status.model_copy(update=fields)
    wire: dict[str, Any] = s.model_dump(mode="json", by_alias=True, exclude_none=True)
    return wire


@pytest.mark.parametrize(
    ("state", "interval", "after", "action", "requeue"),
    [
        pytest.param("Synced", 0, 3600, Action.NONE, None, id="synced-once-stays-synced"),
        pytest.param("Synced", 60, 10, Action.NONE, 50, id="synced-interval-not-due"),
        pytest.param("Synced", 60, 61, Action.START_ROUND, 1.0, id="synced-interval-due"),
        pytest.param("Retry", 0, 0, Action.NONE, 1, id="retry-not-due"),
        pytest.param("Retry", 0, 2, Action.START_ROUND, 1.0, id="retry-due"),
        pytest.param("Syncing", 0, 0, Action.START_ROUND, 1.0, id="left-mid-round-starts-over"),
    ],
)
def test_after_an_operator_restart_the_status_decides(
    state: str, interval: int, after: int, action: Action, requeue: float | None
) -> None:
    p = plan(intervalSeconds=interval, status=status_of(state))
    d = decide_syncplan(p, round=None, now=NOW + timedelta(seconds=after))
    assert d.action is action
    assert d.requeue_after == (None if requeue is None else pytest.approx(requeue))


def test_a_changed_generation_without_a_round_starts_one() -> None:
    p = plan(generation=3, status={**status_of("Synced"), "observedGeneration": 2})
    d = decide_syncplan(p, round=None, now=NOW)
    assert d.action is Action.START_ROUND
    assert "spec changed" in d.why


def test_the_state_is_always_derived_from_the_conditions() -> None:
    views = [None, round_view(), round_view(phase=RoundPhase.SYNCING), done(OK), done(BAD)]
    for v in views:
        status = decide_syncplan(plan(), round=v, now=NOW).status
        assert status.state is derive_state(status.conditions)
        for c in status.conditions:
            assert c.observed_generation == 1
            assert c.status in set(ConditionStatus)


def test_at_most_max_transfers_are_shown_failed_and_running_first() -> None:
    many = tuple(
        transfer(f"r1-{i:03d}", TransferState.SUCCEEDED) for i in range(MAX_TRANSFERS + 10)
    )
    failed = replace(many[-1], state=TransferState.FAILED)
    d = decide_syncplan(plan(), round=done(BAD, transfers=(*many[:-1], failed)), now=NOW)
    names = [t.name for t in d.status.transfers]
    assert len(names) == MAX_TRANSFERS
    assert failed.name in names


def test_next_round_carries_the_counters_on() -> None:
    p = plan(status={"filesSynced": 7, "bytesSynced": 70, "attempts": 2})
    first = next_round(p, None, now=NOW)
    assert (first.number, first.base_files, first.base_bytes, first.base_attempts) == (1, 7, 70, 2)
    after_ok = next_round(
        p,
        done(OK, base_files=7, transfers=(transfer("x", TransferState.SUCCEEDED, done=3),)),
        now=NOW,
    )
    assert (after_ok.number, after_ok.base_files, after_ok.base_attempts) == (2, 10, 0)
    cancelled = next_round(plan(generation=2), round_view(base_attempts=4), now=NOW)
    assert cancelled.base_attempts == 0
    assert get_condition(decide_syncplan(p, round=None, now=NOW).status.conditions, "Synced")
