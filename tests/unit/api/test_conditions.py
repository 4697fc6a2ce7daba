"""The condition helper: merge by type, keep lastTransitionTime while the status holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from ringrift_operator.api.conditions import (
    MAX_CONDITION_MESSAGE_LENGTH,
    Condition,
    ConditionStatus,
    SelfplayJobConditionType,
    SelfplayJobReason,
    SyncPlanConditionType,
    SyncPlanReason,
    TrainingRunConditionType,
    TrainingRunReason,
    get_condition,
    is_true,
    set_condition,
)
from ringrift_operator.api.meta import REASON_PATTERN, rfc3339

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T0S = "2026-01-02T03:04:05Z"
T1S = "2026-01-02T03:09:05Z"


def cond(
    type_: str, status: str, *, reason: str = "Because", at: str = T0S, gen: int = 1
) -> Condition:
    return Condition(
        type=type_,
        status=ConditionStatus(status),
        reason=reason,
        last_transition_time=at,
        observed_generation=gen,
    )


@pytest.mark.parametrize(
    ("before", "status", "reason", "generation", "expected_time"),
    [
        pytest.param([], "True", "Go", 1, T1S, id="new-condition-gets-now"),
        pytest.param([cond("Ready", "True")], "True", "Go", 1, T0S, id="same-status-keeps-time"),
        pytest.param(
            [cond("Ready", "True")], "True", "OtherReason", 1, T0S, id="reason-change-keeps-time"
        ),
        pytest.param([cond("Ready", "False")], "True", "Go", 1, T1S, id="status-change-new-time"),
        pytest.param(
            [cond("Ready", "Unknown")], "False", "No", 1, T1S, id="unknown-to-false-new-time"
        ),
        pytest.param([cond("Ready", "True")], "True", "Go", 7, T0S, id="generation-only-keeps"),
    ],
)
def test_set_condition_transition_time(
    before: list[Condition], status: str, reason: str, generation: int, expected_time: str
) -> None:
    after = set_condition(
        before,
        type="Ready",
        status=status,
        reason=reason,
        message="m",
        generation=generation,
        now=T1,
    )
    ready = get_condition(after, "Ready")
    assert ready is not None
    assert ready.last_transition_time == expected_time
    assert ready.status == ConditionStatus(status)
    assert ready.reason == reason
    assert ready.observed_generation == generation
    assert ready.message == "m"


def test_set_condition_replaces_in_place_and_keeps_others() -> None:
    before = [cond("A", "True"), cond("B", "False"), cond("C", "True")]
    after = set_condition(before, type="B", status="True", reason="Now", generation=2, now=T1)
    assert [c.type for c in after] == ["A", "B", "C"]
    assert after[0] is before[0]
    assert after[2] is before[2]
    assert after[1].status is ConditionStatus.TRUE


def test_set_condition_appends_new_type_last() -> None:
    after = set_condition(
        [cond("A", "True")], type="Z", status="False", reason="R", generation=1, now=T1
    )
    assert [c.type for c in after] == ["A", "Z"]


def test_set_condition_does_not_mutate_input() -> None:
    before = [cond("A", "False")]
    set_condition(before, type="A", status="True", reason="R", generation=3, now=T1)
    assert before == [cond("A", "False")]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(T1, T1S, id="aware-datetime"),
        pytest.param(T1S, T1S, id="rfc3339-string"),
        pytest.param(T1.astimezone(timezone(timedelta(hours=2))), T1S, id="other-zone-to-utc"),
        pytest.param(T1.replace(microsecond=123456), T1S, id="whole-seconds"),
    ],
)
def test_set_condition_now_forms(now: datetime | str, expected: str) -> None:
    (c,) = set_condition([], type="A", status="True", reason="R", generation=1, now=now)
    assert c.last_transition_time == expected


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(datetime(2026, 1, 1), id="naive-datetime"),
        pytest.param("yesterday", id="not-a-time"),
        pytest.param("2026-01-02", id="date-only"),
        pytest.param("2026-01-02T03:04:05", id="no-zone"),
    ],
)
def test_set_condition_rejects_bad_now(now: datetime | str) -> None:
    with pytest.raises(ValueError, match=r"time|timezone"):
        set_condition([], type="A", status="True", reason="R", generation=1, now=now)


def test_set_condition_cuts_long_messages() -> None:
    (c,) = set_condition(
        [], type="A", status="True", reason="R", message="x" * 10_000, generation=1, now=T0
    )
    assert len(c.message) == MAX_CONDITION_MESSAGE_LENGTH


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("", id="empty"),
        pytest.param("has space", id="space"),
        pytest.param("1Leading", id="digit-first"),
    ],
)
def test_set_condition_rejects_bad_reason(reason: str) -> None:
    with pytest.raises(ValidationError):
        set_condition([], type="A", status="True", reason=reason, generation=1, now=T0)


def test_set_condition_rejects_bad_status() -> None:
    with pytest.raises(ValueError, match="Maybe"):
        set_condition([], type="A", status="Maybe", reason="R", generation=1, now=T0)


@pytest.mark.parametrize(
    ("conditions", "type_", "expected"),
    [
        pytest.param([], "A", False, id="absent"),
        pytest.param([cond("A", "True")], "A", True, id="true"),
        pytest.param([cond("A", "False")], "A", False, id="false"),
        pytest.param([cond("A", "Unknown")], "A", False, id="unknown"),
        pytest.param([cond("B", "True")], "A", False, id="other-type"),
    ],
)
def test_is_true(conditions: list[Condition], type_: str, expected: bool) -> None:
    assert is_true(conditions, type_) is expected


def test_get_condition_absent_is_none() -> None:
    assert get_condition([cond("A", "True")], "B") is None


def test_condition_wire_names_are_camel_case() -> None:
    wire = cond("A", "True").model_dump(mode="json", by_alias=True)
    assert set(wire) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_rfc3339_formats_utc() -> None:
    assert rfc3339(T0) == T0S


@pytest.mark.parametrize(
    "enum",
    [
        SelfplayJobConditionType,
        SelfplayJobReason,
        TrainingRunConditionType,
        TrainingRunReason,
        SyncPlanConditionType,
        SyncPlanReason,
    ],
    ids=lambda e: e.__name__,
)
def test_documented_types_and_reasons_are_camel_case(enum: type[ConditionStatus]) -> None:
    assert enum.__doc__
    for member in enum:
        assert re.fullmatch(REASON_PATTERN, member.value), member
        assert member.value[0].isupper(), member


@pytest.mark.parametrize(
    ("status", "reason", "message", "changed"),
    [
        pytest.param("True", "Ready", "same", False, id="unchanged"),
        pytest.param("True", "Ready", "new words", False, id="message-only"),
        pytest.param("True", "Other", "same", True, id="reason"),
        pytest.param("False", "Ready", "same", True, id="status"),
    ],
)
def test_update_condition_reports_transitions(
    status: str, reason: str, message: str, changed: bool
) -> None:
    from ringrift_operator.api.conditions import update_condition

    first, new = update_condition(
        [], type="Scheduled", status="True", reason="Ready", message="same", generation=1,
        now="2026-11-28T12:00:00Z",
    )  # fmt: skip
    assert new is True
    _, flag = update_condition(
        first, type="Scheduled", status=status, reason=reason, message=message, generation=1,
        now="2026-11-28T12:01:00Z",
    )  # fmt: skip
    assert flag is changed
