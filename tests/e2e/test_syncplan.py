"""SyncPlans on the sandbox: games written by SelfplayJobs on several nodes end up byte-identical
on the plan's targets (named, or the top training nodes), through the real node agents; an agent
stopped mid-sync and a tampered file make the plan retry, never fail, and it converges; a round
after convergence moves nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from chaos_support import record
from cluster_support import skip_module_on_existing_cluster
from operator_support import GROUP, VERSION, spj, wait_for_status
from ringrift_operator.agent.pull import PARTIAL_SUFFIX, partial_path
from tests_support import poll

pytestmark = [
    pytest.mark.usefixtures("operator"),
    # Pins work to the sandbox's node names and reads the nodes' data directories from here.
    skip_module_on_existing_cluster("needs the sandbox's nodes and their data directories"),
]
PLURAL = "syncplans"


@pytest.fixture(scope="module")
def custom(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


# --- helpers -------------------------------------------------------------------------------------


def produce(custom: Any, namespace: str, board: str, players: int, jobs: dict[str, str]) -> None:
    """Run SelfplayJobs (name -> node) of one config and wait until every one is Complete."""
    for name, node in jobs.items():
        body = spj(
            name,
            board=board,
            players=players,
            games=5,
            placement={"nodeSelector": {"kubernetes.io/hostname": node}},
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", body)
    for name, node in jobs.items():
        obj = wait_for_status(
            custom, namespace, name, lambda s: s.get("phase") == "Complete", timeout=60
        )
        assert obj["status"]["node"] == node


def games(sandbox: Any, node: str, config: str) -> dict[str, str]:
    """relative path -> sha256 of the config's game files on a node's disk (temp files too)."""
    root = sandbox.node_data_dir(node)
    found = {}
    for path in sorted((root / "games" / config).glob("*")):
        if path.is_file():
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def syncplan(name: str, configs: list[str], targets: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncPlan",
        "metadata": {"name": name},
        "spec": {"configs": configs, "targets": targets, **spec},
    }


def get_plan(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def wait_plan(
    custom: Any, namespace: str, name: str, until: Any, *, timeout: float = 45, what: str = ""
) -> dict[str, Any]:
    return poll(
        lambda: get_plan(custom, namespace, name),
        until=lambda o: bool(until(o.get("status") or {})),
        timeout=timeout,
        what=what or f"SyncPlan {namespace}/{name}",
    )


def synced(generation: int = 1) -> Any:
    return lambda s: s.get("state") == "Synced" and s.get("observedGeneration") == generation


def pulls_logged(operator: Any, namespace: str, name: str) -> int:
    """Pulls the operator asked agents for on behalf of one plan (it logs each one)."""
    return len(re.findall(rf"syncplan {namespace}/{name} round \d+: \S+ pulls ", operator.log()))


def assert_identical_everywhere(
    sandbox: Any, expected: dict[str, str], nodes: list[str], config: str
) -> None:
    for node in nodes:
        held = games(sandbox, node, config)
        assert held == expected, f"{node} holds {held}, expected {expected}"


def file_ids(sandbox: Any, nodes: list[str], config: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(node, path) -> (inode, mtime_ns): changes if anything rewrites a file."""
    ids = {}
    for node in nodes:
        for path in (sandbox.node_data_dir(node) / "games" / config).glob("*"):
            st = path.stat()
            ids[(node, path.name)] = (st.st_ino, st.st_mtime_ns)
    return ids


# --- tests ---------------------------------------------------------------------------------------


def test_games_from_several_nodes_reach_the_named_targets_byte_identical(
    custom: Any, core: Any, namespace: str, sandbox: Any, operator: Any
) -> None:
    producers = {"p1": "gpu-l40s-0", "p2": "gpu-rtx4090-0", "p3": "gpu-a100-1"}
    produce(custom, namespace, "hex8", 2, producers)
    config, targets = "hex8_2p", ["gpu-rtx3090-0", "cpu-0"]
    expected: dict[str, str] = {}
    for node in producers.values():
        expected |= games(sandbox, node, config)
    assert len(expected) >= 3

    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        syncplan("to-named", [config], {"nodeNames": targets}, maxFilesPerJob=2),
    )
    obj = wait_plan(custom, namespace, "to-named", synced(), what="to-named Synced")
    assert_identical_everywhere(sandbox, expected, targets, config)
    status = obj["status"]
    assert status["targetNodes"] == targets
    assert status["missingFiles"] == 0
    assert status["filesSynced"] == len(expected) * len(targets)
    assert status["lastSyncTime"]
    assert all(t["state"] == "Succeeded" and t["files"] <= 2 for t in status["transfers"])
    assert {t["target"] for t in status["transfers"]} == set(targets)
    assert {p["node"] for p in status["peers"]} >= {*producers.values(), *targets}
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types == {"ManifestsCollected": "True", "Synced": "True"}
    # The Event follows the status write: wait for it, then there must be exactly one.
    reasons = poll(
        lambda: [e.reason for e in core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=to-named").items],
        until=bool, timeout=15, what="the Synced Event",
    )  # fmt: skip
    assert reasons == ["Synced"], "one Event per round"

    # A new round (the spec changed) after convergence moves nothing.
    pulls, ids = pulls_logged(operator, namespace, "to-named"), file_ids(sandbox, targets, config)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "to-named", {"spec": {"maxFilesPerJob": 3}}
    )
    obj = wait_plan(custom, namespace, "to-named", synced(2), what="the second round Synced")
    assert obj["status"]["transfers"] == []
    assert obj["status"]["filesSynced"] == len(expected) * len(targets)
    assert pulls_logged(operator, namespace, "to-named") == pulls
    assert file_ids(sandbox, targets, config) == ids


def test_the_top_training_nodes_get_the_games_and_a_resync_moves_nothing(
    custom: Any, namespace: str, sandbox: Any, operator: Any
) -> None:
    producers = {"q1": "gpu-l40s-1", "q2": "gpu-rtx4090-1"}
    produce(custom, namespace, "hex8", 3, producers)
    config = "hex8_3p"
    expected: dict[str, str] = {}
    for node in producers.values():
        expected |= games(sandbox, node, config)

    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        syncplan("to-top", [config], {"topTrainingNodes": 2}, intervalSeconds=2),
    )
    obj = wait_plan(custom, namespace, "to-top", synced(), what="to-top Synced")
    targets = obj["status"]["targetNodes"]
    # The two strongest training nodes; an H100 that failed jobs in earlier tests can rank
    # below an A100 (node reputation), so the class, not the name, is what is certain.
    assert len(set(targets)) == 2
    assert all(t.startswith(("gpu-h100-", "gpu-gh200-", "gpu-a100-")) for t in targets), targets
    assert_identical_everywhere(sandbox, expected, targets, config)
    first_sync = obj["status"]["lastSyncTime"]
    pulls, ids = pulls_logged(operator, namespace, "to-top"), file_ids(sandbox, targets, config)
    assert pulls >= 2

    # intervalSeconds: another round runs on its own, and it moves nothing.
    obj = wait_plan(
        custom,
        namespace,
        "to-top",
        lambda s: s.get("state") == "Synced" and s.get("lastSyncTime") != first_sync,
        what="a re-sync after intervalSeconds",
    )
    assert obj["status"]["filesSynced"] == len(expected) * len(targets)
    assert pulls_logged(operator, namespace, "to-top") == pulls
    assert file_ids(sandbox, targets, config) == ids


def test_a_stopped_agent_and_tampered_files_make_the_plan_retry_then_converge(
    custom: Any, namespace: str, sandbox: Any, operator: Any
) -> None:
    a, b, config = "gpu-a100-0", "gpu-rtx3090-0", "hex8_4p"
    targets = ["cpu-1", "gpu-gh200-0"]
    produce(custom, namespace, "hex8", 4, {"r1": a, "r2": a, "r3": b})
    from_a, from_b = games(sandbox, a, config), games(sandbox, b, config)
    assert len(from_a) == 2
    expected = from_a | from_b
    tampered, resumed = sorted(from_a)
    fleet = sandbox.agent_fleet
    a_dir = sandbox.node_data_dir(a)

    # A's agent hashes its files (as a collection would), then stops (saving its hash cache).
    read_manifest(fleet.agent(a).url, sandbox.agent_token(), config)
    fleet.stop_agent(a)
    cache = json.loads((a_dir / ".agent" / "hashes.json").read_text())
    assert tampered in json.dumps(cache), "the stopped agent kept the hash of the file"
    # Bit rot on A: the bytes change, size and mtime stay: A's manifest entry is now a lie.
    original = tamper_in_place(a_dir / tampered)
    # A broken earlier transfer: a corrupt partial download waits on each target.
    for target in targets:
        dest = sandbox.node_data_dir(target) / resumed
        partial = partial_path(dest, from_a[resumed])
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(b"\x00garbage" * 8)

    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, syncplan("survivor", [config], {"nodeNames": targets})
    )
    obj = wait_plan(
        custom,
        namespace,
        "survivor",
        lambda s: s.get("state") == "Retry" and s.get("attempts", 0) >= 1,
        what="Retry while A's agent is down",
    )
    status = obj["status"]
    peer_a = next(p for p in status["peers"] if p["node"] == a)
    assert peer_a.get("error"), "the failing peer is marked with its error"
    retrying = next(c for c in status["conditions"] if c["type"] == "Retrying")
    assert retrying["reason"] == "PeerUnreachable"
    assert status["retryAfter"]
    poll(
        lambda: games(sandbox, targets[0], config),
        until=lambda g: from_b.items() <= g.items(),
        timeout=30,
        what="B's games on the targets while A is down",
    )

    # A is back: the tampered file fails verification (never installed), the partial is redone.
    fleet.restart_agent(a)
    obj = wait_plan(
        custom,
        namespace,
        "survivor",
        lambda s: any("corrupt" in (t.get("message") or "") for t in s.get("transfers", [])),
        what="the tampered file detected",
    )
    assert obj["status"]["state"] in ("Retry", "Syncing", "Collecting")
    for target in targets:
        held = games(sandbox, target, config)
        assert tampered not in held, "a corrupt copy must never be installed"
        installed = {p: h for p, h in held.items() if not Path(p).name.startswith(".")}
        assert all(expected[p] == h for p, h in installed.items()), f"{target}: verified only"

    # The source is repaired: the next retry converges.
    restore_in_place(a_dir / tampered, original)
    wait_plan(custom, namespace, "survivor", synced(), timeout=60, what="survivor Synced")
    assert_identical_everywhere(sandbox, expected, targets, config)
    for target in targets:
        leftovers = [
            p
            for p in (sandbox.node_data_dir(target) / "games" / config).iterdir()
            if p.name.endswith(PARTIAL_SUFFIX)
        ]
        assert not leftovers, f"{target} kept partial downloads {leftovers}"


AGENT_BACK_SECONDS = 60  # a plan converges within this once the lost agent is back


def test_a_target_agent_lost_mid_plan_converges_when_it_returns_with_no_corrupt_file(
    custom: Any, namespace: str, sandbox: Any
) -> None:
    # square8_3p: no other e2e module plays it (test_trainingrun counts square19_3p's games).
    config, targets = "square8_3p", ["gpu-h100-1", "cpu-1"]
    produce(custom, namespace, "square8", 3, {"s1": "gpu-h100-0", "s2": "gpu-l40s-1"})
    expected = games(sandbox, "gpu-h100-0", config) | games(sandbox, "gpu-l40s-1", config)
    lost, fleet = targets[0], sandbox.agent_fleet
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, syncplan("lossy", [config], {"nodeNames": targets})
    )
    # The agent crashes (SIGKILL: no clean shutdown) while the plan is under way.
    os.killpg(fleet.agent(lost).process.pid, signal.SIGKILL)
    fleet.agent(lost).process.wait(timeout=10)
    state_at_loss = (get_plan(custom, namespace, "lossy").get("status") or {}).get("state", "")
    wait_plan(custom, namespace, "lossy", lambda s: s.get("state") == "Retry",
              what="Retry while the target's agent is gone")  # fmt: skip
    poll(lambda: games(sandbox, targets[1], config), until=lambda g: g == expected, timeout=45,
         what="the other target synced meanwhile")  # fmt: skip

    fleet.restart_agent(lost)
    back = time.monotonic()
    obj = wait_plan(custom, namespace, "lossy", synced(), timeout=AGENT_BACK_SECONDS,
                    what="lossy Synced after the agent returned")  # fmt: skip
    converge_s = time.monotonic() - back
    # Every file on every target has the source's checksum; nothing half-written is left.
    corrupt = [(t, p) for t in targets for p, h in games(sandbox, t, config).items()
               if expected.get(p) != h]  # fmt: skip
    assert not corrupt
    assert_identical_everywhere(sandbox, expected, targets, config)
    leftovers = [p for t in targets for p in (sandbox.node_data_dir(t) / "games" / config).iterdir()
                 if p.name.endswith(PARTIAL_SUFFIX)]  # fmt: skip
    record("agent-loss", files=len(expected), targets=len(targets), state_at_loss=state_at_loss,
           attempts=obj["status"].get("attempts", 0), bound_seconds=AGENT_BACK_SECONDS,
           converge_after_return_seconds=round(converge_s, 1),
           corrupt_files=len(corrupt), partial_files=len(leftovers))  # fmt: skip
    assert not leftovers
    assert converge_s <= AGENT_BACK_SECONDS


def read_manifest(url: str, token: str, config: str) -> Any:
    request = urllib.request.Request(
        f"{url}/v1/manifest?config={config}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def tamper_in_place(path: Path) -> bytes:
    """Flip bytes in the middle of ``path`` in place, restoring its mtime; returns the original."""
    st = path.stat()
    original = path.read_bytes()
    middle = len(original) // 2
    with path.open("r+b") as handle:
        handle.seek(middle)
        handle.write(bytes(b ^ 0xFF for b in original[middle : middle + 16]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return original


def restore_in_place(path: Path, original: bytes) -> None:
    st = path.stat()
    with path.open("r+b") as handle:
        handle.write(original)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
