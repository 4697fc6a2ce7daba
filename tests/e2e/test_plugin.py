"""``kubectl-ringrift`` on a real cluster: run as a program (and through kubectl, which finds it on
PATH) after the operator placed and ran a couple of SelfplayJobs; every command's output is
checked against what the API server holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from crds_support import Kubectl
from operator_support import GROUP, VERSION, spj, wait_for_status

pytestmark = pytest.mark.usefixtures("operator")
BOARD, PLAYERS, CONFIG = "square19", 4, "square19_4p"  # a config no other e2e module uses
JOBS = ("plug-a", "plug-b")
GAMES = 4
BIN = Path(sys.executable).parent
PLUGIN = BIN / "kubectl-ringrift"


@dataclass(frozen=True)
class Placed:
    namespace: str
    jobs: dict[str, dict[str, Any]]  # name -> status once Complete


@pytest.fixture(scope="module")
def placed(core: Any, api_client: Any, crds_installed: Any) -> Iterator[Placed]:
    """A namespace with two completed SelfplayJobs and a TrainingRun waiting for data."""
    ns = f"plugin-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    custom = client.CustomObjectsApi(api_client)
    try:
        for name in JOBS:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "selfplayjobs",
                spj(name, board=BOARD, players=PLAYERS, games=GAMES),
            )  # fmt: skip
        run = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun",
               "metadata": {"name": "plug-tr"},
               "spec": {"board": BOARD, "players": PLAYERS, "minNewGames": 10_000_000}}  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingruns", run)
        statuses = {
            name: wait_for_status(
                custom, ns, name, lambda s: s.get("phase") == "Complete", timeout=60
            )["status"]
            for name in JOBS
        }
        yield Placed(ns, statuses)
    finally:
        core.delete_namespace(ns)


def plugin(sandbox: Any, *args: str) -> subprocess.CompletedProcess[str]:
    assert PLUGIN.exists(), f"{PLUGIN} missing: the package's console scripts are not installed"
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(sandbox.kubeconfig), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def plugin_json(sandbox: Any, *args: str) -> Any:
    result = plugin(sandbox, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def gpu_capacity(core: Any) -> int:
    return sum(
        int((n.status.allocatable or {}).get("nvidia.com/gpu", "0"))
        for n in core.list_node().items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    )


def test_status_shows_the_leader_jobs_gpus_and_training_readiness(
    sandbox: Any, placed: Placed, core: Any
) -> None:
    view = plugin_json(sandbox, "status", "-n", placed.namespace)
    # The Lease the operator holds, read independently.
    leases = client.CoordinationV1Api(core.api_client).list_lease_for_all_namespaces().items
    held = [
        le for le in leases if "ringrift-operator" in le.metadata.name and le.spec.holder_identity
    ]
    assert held, "the operator holds no Lease"
    assert view["leadership"]["leader"] in {le.spec.holder_identity for le in held}
    assert view["leadership"]["epoch"] >= 1
    assert view["leadership"]["expired"] is False
    assert view["selfplayJobs"]["Complete"] == len(JOBS)
    assert sum(view["selfplayJobs"].values()) == len(JOBS)
    assert view["trainingRuns"]["Pending"] == 1
    assert view["gpus"]["total"] == gpu_capacity(core)
    assert view["gpus"]["busy"] + view["gpus"]["idle"] == view["gpus"]["total"]
    (row,) = [r for r in view["training"] if r["config"] == CONFIG]
    assert row["gamesProduced"] == GAMES * len(JOBS)
    assert (row["trainingRun"], row["dataReady"], row["reason"]) == (
        f"{placed.namespace}/plug-tr", "False", "NotEnoughGames")  # fmt: skip

    text = plugin(sandbox, "status", "-n", placed.namespace).stdout
    assert re.search(rf"^Leader:\s+{re.escape(view['leadership']['leader'])} \(renewed", text, re.M)
    assert f"Complete {len(JOBS)}" in text
    assert any(line.startswith(CONFIG) and "NotEnoughGames" in line for line in text.splitlines())


def test_nodes_are_ranked_by_power_with_free_gpus_and_jobs(
    sandbox: Any, placed: Placed, core: Any
) -> None:
    rows = plugin_json(sandbox, "nodes")
    names = {n.metadata.name for n in core.list_node().items}
    assert {r["name"] for r in rows} == names
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    gpu_rows = [r for r in rows if r["gpus"] > 0]
    assert gpu_rows[0]["gpu"].startswith("NVIDIA-H100")  # the strongest class first
    powers = [r["powerScore"] for r in gpu_rows]
    assert powers == sorted(powers, reverse=True)
    assert all(r["gpus"] == 0 for r in rows[len(gpu_rows) :]), "CPU nodes come last"
    for r in rows:
        assert 0 <= r["gpusFree"] <= r["gpus"]
    # Both jobs ran on the nodes their status names: those nodes were candidates then.
    assert {s["node"] for s in placed.jobs.values()} <= {r["name"] for r in gpu_rows}

    header = plugin(sandbox, "nodes").stdout.splitlines()[0].split()
    assert header == ["RANK", "NAME", "GPU", "TIER", "POWER", "GPUS", "FREE", "JOBS", "READY",
                      "TAKES-GPU-JOB", "WHY"]  # fmt: skip


def test_configs_show_the_weights_and_the_recent_jobs(sandbox: Any, placed: Placed) -> None:
    view = plugin_json(sandbox, "configs", "-n", placed.namespace)
    rows = {r["config"]: r for r in view["configs"]}
    assert len(rows) == 12  # every config is enabled by default
    assert rows[CONFIG]["recentJobs"] == len(JOBS)
    assert rows[CONFIG]["recentSharePercent"] == 100.0
    assert sum(r["sharePercent"] for r in rows.values()) == pytest.approx(100, abs=0.5)
    assert all(r["weight"] >= 0.5 for r in rows.values())
    assert view["diversity"]["windowJobs"] == len(JOBS)
    assert view["settingsSource"]


def test_explain_tells_why_the_job_runs_on_its_node(sandbox: Any, placed: Placed) -> None:
    name = JOBS[0]
    status = placed.jobs[name]
    view = plugin_json(sandbox, "explain", name, "-n", placed.namespace)
    assert view["node"] == status["node"]
    assert view["powerScore"] == status["powerScore"]
    decision = view["decision"]
    assert decision["reason"] == "NodeSelected"
    assert f"bound to {status['node']}" in decision["message"]
    assert "candidate(s)" in decision["message"]  # what the node was chosen over
    assert "Scheduled" in {e["reason"] for e in view["events"]}
    assert [a["node"] for a in view["history"]] == [status["node"]]
    assert view["now"]["candidates"] + view["now"]["rejected"] > 0

    text = plugin(sandbox, "explain", name, "-n", placed.namespace).stdout
    assert "Decision:" in text
    assert status["node"] in text

    missing = plugin(sandbox, "explain", "no-such-job", "-n", placed.namespace)
    assert missing.returncode == 1
    assert 'selfplayjobs.ringrift.ai "no-such-job" not found' in missing.stderr


def test_elo_plot_is_written(sandbox: Any, placed: Placed, tmp_path: Path) -> None:
    out = tmp_path / "elo.png"
    result = plugin(sandbox, "elo", "-n", placed.namespace, "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert "No evaluated models yet" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_adds_the_operator_status_endpoint(sandbox: Any, operator: Any) -> None:
    view = plugin_json(sandbox, "status", "--status-url", operator.url)
    assert view["operator"]["role"] in {"leader", "standby"}
    assert view["operator"]["epoch"] >= 1


def test_kubectl_finds_and_runs_the_plugin(kubectl: Kubectl, placed: Placed) -> None:
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    listed = run_kubectl(kubectl, env, "plugin", "list")
    assert str(PLUGIN) in listed.stdout, listed.stderr
    via_kubectl = run_kubectl(kubectl, env, "ringrift", "status", "-n", placed.namespace,
                              "-o", "json")  # fmt: skip
    assert via_kubectl.returncode == 0, via_kubectl.stderr
    assert json.loads(via_kubectl.stdout)["selfplayJobs"]["Complete"] == len(JOBS)


def run_kubectl(
    kubectl: Kubectl, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """kubectl with the plugin's directory on PATH; the plugin gets the kubeconfig from
    $KUBECONFIG as kubectl's own commands do."""
    return subprocess.run(
        [str(kubectl.binary), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **env, "KUBECONFIG": str(kubectl.kubeconfig),
             "KUBECACHEDIR": str(kubectl.cache_dir)},
    )  # fmt: skip
