"""A corrupt history database does not stop the operator: started on a file of garbage, it moves
the file aside (``history.db.corrupt-<time>``), says so once in its log, on ``/metrics``,
``/status`` and in a Warning Event on its Pod, starts a fresh store and keeps working — a
SelfplayJob completes and its attempt lands in the new database.

(The store's recovery from each kind of damage — garbage, truncation, a damaged page or header —
and its survival of SIGKILL mid-write are unit tests: tests/unit/state/.)"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from operator_support import GROUP, VERSION, spj, start_operator, wait_for_status
from tests_support import poll

pytestmark = pytest.mark.usefixtures("crds_installed", "simulator", "no_operator")

GARBAGE = b"this is not a history database \x00\xff" * 400


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


def attempts_in(db: Path, name: str) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT count(*) FROM job_attempts WHERE name = ?", (name,)).fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_operator_moves_a_corrupt_history_aside_and_keeps_working(
    sandbox: Any, api_client: Any, core: Any, namespace: str
) -> None:
    name = f"history-{uuid.uuid4().hex[:6]}"
    directory = sandbox.directory / name
    directory.mkdir()
    db = directory / "history.db"  # where start_operator points RINGRIFT_HISTORY_PATH
    db.write_bytes(GARBAGE)
    pod = "ringrift-operator-7d9f-abcde"  # the Pod the downward API would name
    proc = start_operator(
        sandbox,
        name=name,
        env={
            "RINGRIFT_NAMESPACE": namespace,
            "RINGRIFT_LEASE_NAME": name,
            "RINGRIFT_LEASE_NAMESPACE": namespace,
            "RINGRIFT_AGENT_TOKEN_FILE": str(sandbox.directory / "agent-token"),
            "POD_NAME": pod,
            "POD_NAMESPACE": namespace,
        },
    )
    try:
        # Moved aside, byte for byte, and a fresh database in its place.
        moved = list(directory.glob("history.db.corrupt-*"))
        assert [p.read_bytes() for p in moved] == [GARBAGE], moved
        # Said once, clearly, on one line naming both files.
        warnings = [line for line in proc.log().splitlines() if "is corrupt" in line]
        assert len(warnings) == 1, warnings
        assert "WARNING" in warnings[0]
        assert str(db) in warnings[0]
        assert str(moved[0]) in warnings[0]
        metrics = get(proc.url + "/metrics")
        assert "ringrift_history_recoveries_total 1.0" in metrics
        assert "ringrift_history_available 1.0" in metrics
        state = json.loads(get(proc.url + "/status"))["managers"]["state_manager"]
        assert state["status"] == "healthy"
        assert state["recovered_from"] == str(moved[0])
        events = poll(
            lambda: (
                core.list_namespaced_event(
                    namespace, field_selector=f"involvedObject.name={pod}"
                ).items
            ),
            until=lambda items: any(e.reason == "HistoryRecovered" for e in items),
            timeout=30,
            what="the HistoryRecovered Event on the operator's Pod",
        )
        event = next(e for e in events if e.reason == "HistoryRecovered")
        assert event.type == "Warning"
        assert moved[0].name in event.message

        # Keeps working: a job completes and its history goes to the fresh store.
        custom = client.CustomObjectsApi(api_client)
        # square19_4p: a config no module counts games of (see test_fuzz.UNUSED_CONFIGS).
        job = spj("after-recovery", games=3, board="square19", players=4)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", job)
        obj = wait_for_status(
            custom, namespace, "after-recovery",
            lambda s: s.get("phase") in ("Complete", "Failed"), timeout=90,
        )  # fmt: skip
        assert obj["status"]["phase"] == "Complete", obj["status"]
        poll(
            lambda: attempts_in(db, "after-recovery"),
            until=lambda n: n >= 1,
            timeout=30,
            what="the job's attempt in the fresh history store",
        )
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert proc.alive()
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()

    # Restarted on the now healthy file: nothing more is moved aside.
    again = start_operator(  # a fresh log, the same database
        sandbox, name=f"{name}-again", env={**(proc.env or {}), "RINGRIFT_HISTORY_PATH": str(db)}
    )
    try:
        assert len(list(directory.glob("history.db.corrupt-*"))) == 1
        assert "ringrift_history_recoveries_total 0.0" in get(again.url + "/metrics")
        assert attempts_in(db, "after-recovery") >= 1
    finally:
        again.stop()
