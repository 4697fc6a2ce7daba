"""Lease decisions: create, renew, take over an expired lease, stand by a fresh one; and when a
replica may still act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ringrift_operator.managers.leadership import (
    LeaseAction,
    LeaseView,
    decide_lease,
    holds_leadership,
    lease_view,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def lease(holder: str, *, age: float, transitions: int = 3) -> LeaseView:
    return LeaseView(holder=holder, duration_seconds=15, renew_time=NOW - timedelta(seconds=age),
                     transitions=transitions, resource_version="42")  # fmt: skip


@pytest.mark.parametrize(
    ("current", "action", "epoch"),
    [
        pytest.param(None, LeaseAction.CREATE, 1, id="no-lease-create"),
        pytest.param(lease("me", age=2), LeaseAction.RENEW, 3, id="ours-renew"),
        pytest.param(lease("me", age=60), LeaseAction.RENEW, 3, id="ours-even-if-late"),
        pytest.param(lease("other", age=2), LeaseAction.STANDBY, 3, id="fresh-other-standby"),
        pytest.param(lease("other", age=15), LeaseAction.STANDBY, 3, id="at-expiry-still-held"),
        pytest.param(lease("other", age=16), LeaseAction.ACQUIRE, 4, id="expired-take-over"),
        pytest.param(lease("", age=1), LeaseAction.ACQUIRE, 4, id="released-take-over"),
    ],
)
def test_decide_lease(current: LeaseView | None, action: LeaseAction, epoch: int) -> None:
    d = decide_lease(current, identity="me", duration_seconds=15, now=NOW)
    assert d.action is action
    assert d.epoch == epoch
    if action is LeaseAction.STANDBY:
        assert d.body is None
    else:
        assert d.body is not None
        assert d.body["holderIdentity"] == "me"
        assert d.body["leaseTransitions"] == epoch


def test_take_over_sets_acquire_time_renew_keeps_it() -> None:
    taken = decide_lease(lease("other", age=30), identity="me", duration_seconds=15, now=NOW)
    renewed = decide_lease(lease("me", age=1), identity="me", duration_seconds=15, now=NOW)
    assert taken.body is not None
    assert "acquireTime" in taken.body
    assert renewed.body is not None
    assert "acquireTime" not in renewed.body


def test_lease_view_reads_the_object() -> None:
    view = lease_view(
        {
            "metadata": {"resourceVersion": "7"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                     "renewTime": "2026-11-28T12:00:00.000000Z", "leaseTransitions": 2},
        }
    )  # fmt: skip
    assert view == LeaseView("a", 15, NOW, 2, "7")
    assert lease_view(None) is None


@pytest.mark.parametrize(
    ("last", "now", "may_act"),
    [
        pytest.param(None, 100.0, False, id="never-renewed"),
        pytest.param(100.0, 105.0, True, id="recent"),
        pytest.param(100.0, 111.9, True, id="inside-margin"),
        pytest.param(100.0, 112.0, False, id="margin-reached"),
        pytest.param(100.0, 400.0, False, id="woke-from-sigstop"),
    ],
)
def test_holds_leadership(last: float | None, now: float, may_act: bool) -> None:
    assert holds_leadership(last_renewed=last, now=now, duration_seconds=15,
                            margin_seconds=3) is may_act  # fmt: skip
