"""Security on the sandbox's real API server (see docs/security.md):

- Pod Security: in a namespace that enforces ``restricted``, a privileged pod is refused (so
  enforcement is on) and the chart's operator Deployment is admitted and runs; the agent
  DaemonSet's pod and a workload pod the operator created break ``restricted`` by nothing but
  their hostPath data volume (and, for the agent, the optional root ``chown`` init container);
- no credentials in the open: an operator run at DEBUG with a known API bearer token and agent
  token completes a SelfplayJob and a SyncPlan (agents pulling from agents), then neither secret
  appears in its log, the agents' logs, any Event, any resource's status, ``/status`` or
  ``/metrics``;
- the node agents refuse calls without the token, or with a wrong one (401), on every route but
  ``/healthz``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from crds_support import KINDS, Kubectl
from operator_support import GROUP, VERSION, OperatorProcess, spj, start_operator, wait_for_status
from ringrift_operator.api.common import LABEL_MANAGED_BY, OPERATOR_NAME
from tests_support import poll

pytestmark = pytest.mark.usefixtures("crds_installed", "simulator", "no_operator")

CHART = str(Path(__file__).resolve().parents[2] / "charts" / "ringrift-operator")
KUBE_VERSION = "1.36.0"  # helm template does not ask the cluster
RELEASE = "psa"
FULL = f"{RELEASE}-ringrift-operator"
RESTRICTED_PREFIX = 'violates PodSecurity "restricted:latest": '
HOSTPATH_ONLY = 'restricted volume types (volume "data" uses restricted volume type "hostPath")'


def helm(sandbox: Any, tmp_path_factory: pytest.TempPathFactory, *args: str) -> str:
    from ringrift_sandbox.tools import find_tool

    home = tmp_path_factory.getbasetemp() / "helm-home-security"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),  # helm's client caches discovery under $HOME/.kube
        "KUBECONFIG": str(sandbox.kubeconfig),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(find_tool("helm")), *args], capture_output=True, text=True, timeout=180, env=env,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def restricted_ns(kubectl: Kubectl) -> Iterator[str]:
    """A namespace whose Pod Security admission enforces the ``restricted`` level."""
    ns = f"restricted-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")  # fmt: skip
    try:
        yield ns
    finally:
        kubectl("delete", "namespace", ns, "--wait=true", timeout=120)


def forbidden(call: Any) -> str:
    """The message of the 403 a call must get from Pod Security admission."""
    with pytest.raises(ApiException) as raised:
        call()
    assert raised.value.status == 403, raised.value.body
    message = str(json.loads(raised.value.body)["message"])
    assert RESTRICTED_PREFIX in message, message
    return message.split(RESTRICTED_PREFIX, 1)[1]


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# --- Pod Security ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "violation"),
    [
        pytest.param({"securityContext": {"privileged": True}}, "privileged", id="privileged"),
        pytest.param({}, "runAsNonRoot != true", id="no-security-context"),
    ],
)
def test_negative_control_pod_is_refused_in_the_restricted_namespace(
    core: Any, restricted_ns: str, container: dict[str, Any], violation: str
) -> None:
    spec = {"containers": [{"name": "c", "image": "busybox", **container}]}
    message = forbidden(lambda: core.create_namespaced_pod(restricted_ns, pod("bad", spec)))
    assert violation in message


def test_the_charts_operator_deployment_is_admitted_under_restricted(
    sandbox: Any,
    core: Any,
    kubectl: Kubectl,
    restricted_ns: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = helm(
        sandbox, tmp_path_factory, "install", RELEASE, CHART, "-n", restricted_ns,
        "--set=crds.install=false", "--set=agent.enabled=false", "--set=operator.replicas=1",
        "--wait", "--timeout=120s",
    )  # fmt: skip
    assert "STATUS: deployed" in out
    try:
        pods = poll(
            lambda: (
                core.list_namespaced_pod(
                    restricted_ns, label_selector="app.kubernetes.io/component=operator"
                ).items
            ),
            until=lambda items: len(items) == 1 and items[0].status.phase == "Running",
            timeout=60,
            what="the operator pod admitted and running",
        )
        spec = pods[0].spec
        assert spec.security_context.run_as_non_root is True
        context = spec.containers[0].security_context
        assert context.capabilities.drop == ["ALL"]
        assert context.allow_privilege_escalation is False
        assert context.read_only_root_filesystem is True
        events = core.list_namespaced_event(restricted_ns).items
        refusals = [e.message for e in events if e.reason == "FailedCreate"]
        assert not refusals, refusals
    finally:
        helm(sandbox, tmp_path_factory, "uninstall", RELEASE, "-n", restricted_ns, "--wait")


@pytest.mark.parametrize(
    ("prepare", "extra"),
    [
        pytest.param(False, [], id="agent"),
        pytest.param(
            True,
            ["unrestricted capabilities", "runAsNonRoot != true", "runAsUser=0"],
            id="agent-with-chown-init-container",
        ),
    ],
)
def test_agent_pod_breaks_restricted_only_by_its_data_volume(
    sandbox: Any,
    core: Any,
    restricted_ns: str,
    tmp_path_factory: pytest.TempPathFactory,
    prepare: bool,
    extra: list[str],
) -> None:
    rendered = helm(
        sandbox, tmp_path_factory, "template", RELEASE, CHART, "-n", restricted_ns,
        "--set=crds.install=false", f"--set=agent.prepareDataDir={str(prepare).lower()}",
        "--show-only=templates/daemonset.yaml", f"--kube-version={KUBE_VERSION}",
    )  # fmt: skip
    daemonset = yaml.safe_load(rendered)
    spec = daemonset["spec"]["template"]["spec"]
    spec["serviceAccountName"] = "default"  # the chart's account is not installed here
    message = forbidden(
        lambda: core.create_namespaced_pod(restricted_ns, pod("agent", spec), dry_run="All")
    )
    if not extra:
        assert message == HOSTPATH_ONLY
    else:
        assert HOSTPATH_ONLY in message
        for check in extra:
            assert check in message, message
        assert 'container "prepare-data-dir"' in message
        assert 'container "agent"' not in message, message


# --- an operator with known secrets ----------------------------------------------------------


@pytest.fixture(scope="module")
def secrets_run(
    sandbox: Any, api_client: Any, core: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator at DEBUG, scoped to a fresh namespace, that has completed a SelfplayJob on a
    chosen node and a SyncPlan copying its games to two others; yields it and the namespace."""
    ns = f"secrets-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    name = f"secrets-operator-{ns}"
    proc = start_operator(
        sandbox,
        name=name,
        args=("--verbose",),
        env={
            "RINGRIFT_NAMESPACE": ns,
            "RINGRIFT_LEASE_NAME": name,
            "RINGRIFT_LEASE_NAMESPACE": ns,
            "RINGRIFT_AGENT_TOKEN_FILE": str(sandbox.directory / "agent-token"),
        },
    )
    try:
        custom = client.CustomObjectsApi(api_client)
        nodes = sorted(sandbox.agent_fleet.urls())
        assert len(nodes) >= 3
        source, *targets = nodes[:3]
        # square19_4p: a config no module counts games of (see test_fuzz.UNUSED_CONFIGS).
        job = spj("secret-job", board="square19", players=4, games=4, gpus=0,
                  placement={"nodeSelector": {"kubernetes.io/hostname": source}})  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "selfplayjobs", job)
        done = wait_for_status(
            custom, ns, "secret-job", lambda s: s.get("phase") in ("Complete", "Failed"), timeout=90
        )
        assert done["status"]["phase"] == "Complete", done["status"]
        plan = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncPlan",
            "metadata": {"name": "secret-sync"},
            "spec": {"configs": ["square19_4p"], "targets": {"nodeNames": targets}},
        }  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "syncplans", plan)
        poll(
            lambda: custom.get_namespaced_custom_object(GROUP, VERSION, ns, "syncplans",
                                                        "secret-sync"),
            until=lambda o: (o.get("status") or {}).get("state") == "Synced",
            timeout=90,
            what="SyncPlan secret-sync Synced",
        )  # fmt: skip
        yield proc, ns
    finally:
        proc.stop()
        core.delete_namespace(ns)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


def test_no_credentials_in_logs_events_or_status(
    secrets_run: tuple[OperatorProcess, str], sandbox: Any, kubectl: Kubectl
) -> None:
    proc, ns = secrets_run
    secrets = {"API bearer token": sandbox.pki.admin_token(), "agent token": sandbox.agent_token()}
    assert secrets["API bearer token"] in sandbox.kubeconfig.read_text()
    places: dict[str, str] = {
        "operator log": proc.log(),
        "operator /status": get(proc.url + "/status"),
        "operator /metrics": get(proc.url + "/metrics"),
        "Events": kubectl("get", "events", "-A", "-o", "json"),
    }
    for info in KINDS.values():
        places[f"{info.plural} (status)"] = kubectl("get", info.plural, "-A", "-o", "json")
    for log in sorted((sandbox.directory / "logs").glob("agent-*.log")):
        places[log.name] = log.read_text(errors="replace")
    # The run did what it should, at DEBUG, so the search means something.
    assert "DEBUG" in places["operator log"]
    assert '"phase": "Complete"' in places["selfplayjobs (status)"]
    assert '"state": "Synced"' in places["syncplans (status)"]
    assert any(e["involvedObject"].get("namespace") == ns
               for e in json.loads(places["Events"])["items"])  # fmt: skip
    leaks = [
        f"{secret} in {place}"
        for secret, value in secrets.items()
        for place, text in places.items()
        if value in text or value[:12] in text  # a truncated token leaks as much
    ]
    assert not leaks, leaks


def test_workload_pod_breaks_restricted_only_by_its_data_volume(
    secrets_run: tuple[OperatorProcess, str], core: Any, restricted_ns: str
) -> None:
    _, ns = secrets_run
    pods = core.list_namespaced_pod(ns, label_selector=f"{LABEL_MANAGED_BY}={OPERATOR_NAME}")
    assert pods.items, "the operator's workload pods are kept until their job goes"
    spec = client.ApiClient().sanitize_for_serialization(pods.items[0].spec)
    spec.pop("nodeName", None)
    assert spec["automountServiceAccountToken"] is False
    message = forbidden(
        lambda: core.create_namespaced_pod(restricted_ns, pod("workload", spec), dry_run="All")
    )
    assert message == HOSTPATH_ONLY


# --- agents refuse unauthenticated calls -----------------------------------------------------


def status_of(url: str, *, method: str = "GET", token: str | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_sandbox_agents_refuse_unauthenticated_calls(sandbox: Any) -> None:
    urls = sandbox.agent_fleet.urls()
    token = sandbox.agent_token()
    wrong = "0" * len(token)
    for node, url in sorted(urls.items()):
        assert status_of(url + "/healthz") == 200, node
        assert status_of(url + "/v1/manifest", token=token) == 200, node
        for route, method in (("/v1/manifest", "GET"), ("/v1/files/games/x.jsonl", "GET"),
                              ("/v1/pull", "POST")):  # fmt: skip
            assert status_of(url + route, method=method) == 401, (node, route)
            assert status_of(url + route, method=method, token=wrong) == 401, (node, route)
