"""The Helm chart on the sandbox's real API server: ``helm install`` is accepted object by object,
the operator's and the agent's ServiceAccounts can do exactly what docs/install.md says and no
more (``kubectl auth can-i``), ``helm upgrade`` keeps the agent token, ``helm uninstall`` keeps
the CRDs, and the operator, run under its ServiceAccount's own token, completes a SelfplayJob.

The release installs with the chart's defaults (2 operator replicas, the agent DaemonSet): no
image runs here, but KWOK plays the kubelet, so the controllers' pods are created and placed;
that checks the agent's node affinity and tolerations on real scheduling, not only on paper.
The tests of this module run in order against one release.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from cluster_support import skip_module_on_existing_cluster
from crds_support import Kubectl
from tests_support import poll

# make kind-e2e installs the chart itself; a second release would run a second operator
# beside it (and these tests impersonate accounts through the sandbox's admin credentials).
pytestmark = skip_module_on_existing_cluster("installs its own release of the chart")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ringrift-operator"
RELEASE = "rr"
FULL = "rr-ringrift-operator"
CRDS = ["selfplayjobs.ringrift.ai", "trainingruns.ringrift.ai", "syncplans.ringrift.ai"]
KUBE_VERSION = "1.36.0"


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def __call__(self, *args: str, timeout: float = 180) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def helm(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    from ringrift_sandbox.tools import find_tool

    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "KUBECONFIG": str(sandbox.kubeconfig),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Helm(binary=find_tool("helm"), env=env)


@pytest.fixture(scope="module")
def release_ns(kubectl: Kubectl, helm: Helm) -> Iterator[str]:
    """A namespace for the release; the release is uninstalled and the namespace deleted after."""
    ns = f"helm-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged")
    try:
        yield ns
    finally:
        helm.run("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=60s")
        kubectl("delete", "namespace", ns, "--wait=true", timeout=120)


def adopt_crds(kubectl: Kubectl, ns: str) -> None:
    """CRDs applied earlier in the session (``crds_installed``) become the release's, as
    docs/install.md tells users who installed them with kubectl first."""
    present = kubectl("get", "crd", "-o", "name").split()
    for crd in CRDS:
        if f"customresourcedefinition.apiextensions.k8s.io/{crd}" in present:
            kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
            kubectl(
                "annotate",
                "crd",
                crd,
                "--overwrite",
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={ns}",
            )


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json"))
    return obj


# --- install -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def install_output(helm: Helm, kubectl: Kubectl, release_ns: str) -> str:
    """``helm install`` with the default values (waiting for the pods); returns its output."""
    adopt_crds(kubectl, release_ns)
    return helm("install", RELEASE, str(CHART), "-n", release_ns, "--wait", "--timeout=120s")


@pytest.fixture(scope="module")
def installed(install_output: str, helm: Helm, release_ns: str) -> list[dict[str, Any]]:
    """The release's objects, from ``helm get manifest``."""
    manifest = helm("get", "manifest", RELEASE, "-n", release_ns)
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_install_notes_tell_the_next_commands(install_output: str, release_ns: str) -> None:
    notes = install_output[install_output.index("NOTES:") :]
    assert f"kubectl -n {release_ns} get pods -l app.kubernetes.io/instance={RELEASE}" in notes
    assert "kubectl get selfplayjobs,trainingruns,syncplans -A" in notes
    assert "kind: SelfplayJob" in notes
    assert f"logs deploy/{FULL}" in notes


def test_install_creates_every_object_on_the_api_server(
    installed: list[dict[str, Any]], kubectl: Kubectl, release_ns: str
) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in installed}
    assert ("Deployment", FULL) in kinds
    assert ("DaemonSet", f"{FULL}-agent") in kinds
    assert {("CustomResourceDefinition", name) for name in CRDS} <= kinds
    for obj in installed:
        scope = ["-n", release_ns] if "namespace" in obj["metadata"] else []
        live = get_json(kubectl, obj["kind"].lower(), obj["metadata"]["name"], *scope)
        assert live["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, obj["kind"]
    for crd in CRDS:
        conditions = get_json(kubectl, "crd", crd)["status"]["conditions"]
        assert {"type": "Established", "status": "True"}.items() <= next(
            c for c in conditions if c["type"] == "Established"
        ).items()


def _work_nodes(kubectl: Kubectl) -> set[str]:
    nodes = get_json(kubectl, "nodes")["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        if "true"
        in (
            n["metadata"]["labels"].get("nvidia.com/gpu.present"),
            n["metadata"]["labels"].get("ringrift.ai/worker"),
        )
    }


def test_controllers_place_the_pods_where_the_chart_says(
    installed: list[dict[str, Any]], kubectl: Kubectl, release_ns: str
) -> None:
    work_nodes = _work_nodes(kubectl)
    assert work_nodes, "the sandbox has GPU nodes labelled by 'GFD'"
    daemonset = poll(
        lambda: get_json(kubectl, "daemonset", f"{FULL}-agent", "-n", release_ns),
        until=lambda d: d.get("status", {}).get("currentNumberScheduled") == len(work_nodes),
        timeout=60,
        what="agent pods on every work node",
    )
    assert daemonset["status"]["desiredNumberScheduled"] == len(work_nodes)
    pods = get_json(kubectl, "pods", "-n", release_ns, "-l", "app.kubernetes.io/component=agent")
    assert {p["spec"]["nodeName"] for p in pods["items"]} == work_nodes
    deployment = get_json(kubectl, "deployment", FULL, "-n", release_ns)
    assert deployment["status"].get("replicas") == 2


# --- RBAC ----------------------------------------------------------------------------------------

_ROW = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def can_i_list(kubectl: Kubectl, user: str, ns: str) -> dict[tuple[str, str], set[str]]:
    """(resource, resourceName) -> verbs, from ``kubectl auth can-i --list`` (resources only)."""
    out = kubectl("auth", "can-i", "--list", f"--as={user}", "-n", ns)
    table: dict[tuple[str, str], set[str]] = {}
    for line in out.splitlines()[1:]:
        match = _ROW.match(line)
        assert match, f"unparsed can-i row: {line!r}"
        resource, _urls, names, verbs = match.groups()
        if not resource:
            continue  # a non-resource URL (/api, /healthz...), granted to every user
        for name in names.split() or [""]:
            table.setdefault((resource, name), set()).update(verbs.split())
    return table


# What every authenticated user may do anyway (system:basic-user and friends).
BASELINE = {
    ("selfsubjectreviews.authentication.k8s.io", ""): {"create"},
    ("selfsubjectaccessreviews.authorization.k8s.io", ""): {"create"},
    ("selfsubjectrulesreviews.authorization.k8s.io", ""): {"create"},
}
CR_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
OPERATOR_CLUSTER = {
    **{(f"{r}.ringrift.ai", ""): CR_VERBS for r in ("selfplayjobs", "trainingruns", "syncplans")},
    **{
        (f"{r}.ringrift.ai/status", ""): {"get", "update", "patch"}
        for r in ("selfplayjobs", "trainingruns", "syncplans")
    },
    ("selfplayjobs.ringrift.ai/finalizers", ""): {"update"},
    ("trainingruns.ringrift.ai/finalizers", ""): {"update"},
    ("pods", ""): {"get", "list", "watch", "create", "delete"},
    ("services", ""): {"create"},
    ("pods/binding", ""): {"create"},
    ("nodes", ""): {"get", "list", "watch"},
    ("events", ""): {"create"},
}


def operator_namespace_rules(ns_rules: bool) -> dict[tuple[str, str], set[str]]:
    if not ns_rules:
        return {}
    return {
        ("leases.coordination.k8s.io", ""): {"create"},
        ("leases.coordination.k8s.io", FULL): {"get", "update"},
        ("configmaps", f"{FULL}-settings"): {"get"},
        ("secrets", f"{FULL}-agent-token"): {"get"},
    }


def test_operator_service_account_has_exactly_its_rules(
    installed: list[dict[str, Any]], kubectl: Kubectl, release_ns: str
) -> None:
    user = f"system:serviceaccount:{release_ns}:{FULL}"
    for ns, own in ((release_ns, True), ("default", False)):
        table = can_i_list(kubectl, user, ns)
        for (resource, name), verbs in table.items():
            assert "*" not in resource, resource
            assert "*" not in verbs, (resource, verbs)
            assert not verbs & {"escalate", "bind", "impersonate"}, resource
            if resource == "secrets":
                assert (name, verbs, ns) == (f"{FULL}-agent-token", {"get"}, release_ns)
        expected = {**BASELINE, **OPERATOR_CLUSTER, **operator_namespace_rules(own)}
        assert {k: v for k, v in table.items() if k not in BASELINE} == {
            k: v for k, v in expected.items() if k not in BASELINE
        }, f"in namespace {ns}"


@pytest.mark.parametrize(
    ("question", "allowed"),
    [
        (["get", "secrets/rr-ringrift-operator-agent-token"], True),
        (["get", "secrets/other"], False),
        (["list", "secrets"], False),
        (["create", "pods/binding"], True),
        (["patch", "nodes"], False),
        (["escalate", "clusterroles"], False),
        (["bind", "clusterroles"], False),
        (["impersonate", "serviceaccounts"], False),
        (["create", "leases.coordination.k8s.io"], True),
        (["update", f"leases.coordination.k8s.io/{FULL}"], True),
        (["update", "leases.coordination.k8s.io/someone-else"], False),
        (["delete", "customresourcedefinitions"], False),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_operator_can_i(
    installed: list[dict[str, Any]],
    kubectl: Kubectl,
    release_ns: str,
    question: list[str],
    allowed: bool,
) -> None:
    user = f"system:serviceaccount:{release_ns}:{FULL}"
    result = kubectl.run("auth", "can-i", *question, f"--as={user}", "-n", release_ns)
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr


def test_agent_service_account_may_only_get_and_patch_nodes(
    installed: list[dict[str, Any]], kubectl: Kubectl, release_ns: str
) -> None:
    user = f"system:serviceaccount:{release_ns}:{FULL}-agent"
    table = can_i_list(kubectl, user, release_ns)
    assert {k: v for k, v in table.items() if k not in BASELINE} == {
        ("nodes", ""): {"get", "patch"}
    }


# --- the operator under its own identity ---------------------------------------------------------


# kopf's optional cluster scanning (new CRDs, namespace patterns) lists namespaces and CRDs; the
# chart does not grant it: without it kopf logs these denials once and serves what it found at
# startup. The operator can turn scanning off (kopf's settings.scanning.disabled) to silence them.
KOPF_SCANNING = re.compile(r'cannot (list|watch) resource "(namespaces|customresourcedefinitions)"')


def service_account_kubeconfig(kubectl: Kubectl, sandbox: Any, ns: str, path: Path) -> Path:
    """A kubeconfig whose user is the operator's ServiceAccount, by a TokenRequest token: the
    operator then runs with exactly the chart's RBAC."""
    token = kubectl("create", "token", FULL, "-n", ns, "--duration=1h").strip()
    admin = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "operator",
        "clusters": [cluster],
        "users": [{"name": "operator-sa", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": "operator-sa"}}
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_operator_completes_a_selfplayjob_as_its_service_account(
    installed: list[dict[str, Any]],
    kubectl: Kubectl,
    sandbox: Any,
    simulator: Any,
    release_ns: str,
    tmp_path: Path,
) -> None:
    from kubernetes import client, config

    from operator_support import spj, start_operator, wait_for_status

    work = tmp_path / "operator"
    work.mkdir()
    kubeconfig = service_account_kubeconfig(
        kubectl, sandbox, release_ns, tmp_path / "sa.kubeconfig"
    )
    as_sa = SimpleNamespace(directory=work, kubeconfig=kubeconfig)  # start_operator's view
    proc = start_operator(
        as_sa,
        name="sa-operator",
        env={
            "RINGRIFT_NAMESPACE": release_ns,
            "RINGRIFT_LEASE_NAMESPACE": release_ns,  # what the chart's settings say
            "RINGRIFT_LEASE_NAME": FULL,
            "RINGRIFT_AGENT_TOKEN_FILE": str(sandbox.directory / "agent-token"),
        },
    )
    api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "ringrift.ai", "v1alpha1", release_ns, "selfplayjobs", spj("as-sa", games=3)
        )
        obj = wait_for_status(
            custom,
            release_ns,
            "as-sa",
            lambda s: s.get("phase") in ("Complete", "Failed"),
            timeout=90,
        )
        assert obj["status"]["phase"] == "Complete", obj["status"]
        denied = [
            line
            for line in proc.log().splitlines()
            if ("Forbidden" in line or " 403" in line) and not KOPF_SCANNING.search(line)
        ]
        assert not denied, "\n".join(denied[-10:])
    finally:
        proc.stop()
        api.close()


# --- upgrade and uninstall -----------------------------------------------------------------------


def _token(kubectl: Kubectl, ns: str) -> str:
    secret = get_json(kubectl, "secret", f"{FULL}-agent-token", "-n", ns)
    return base64.b64decode(secret["data"]["token"]).decode()


def test_upgrade_applies_values_and_keeps_the_token(
    installed: list[dict[str, Any]], helm: Helm, kubectl: Kubectl, release_ns: str
) -> None:
    before = _token(kubectl, release_ns)
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        release_ns,
        "--reuse-values",
        "--set=operator.replicas=1",
        "--set=settings.workers=8",
        "--timeout=120s",
    )
    assert _token(kubectl, release_ns) == before
    assert get_json(kubectl, "deployment", FULL, "-n", release_ns)["spec"]["replicas"] == 1
    missing = kubectl.run("get", "pdb", FULL, "-n", release_ns)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    settings = get_json(kubectl, "configmap", f"{FULL}-settings", "-n", release_ns)
    assert yaml.safe_load(settings["data"]["settings.yaml"])["workers"] == 8
    status = json.loads(helm("status", RELEASE, "-n", release_ns, "-o", "json"))
    assert (status["version"], status["info"]["status"]) == (2, "deployed")


def test_uninstall_keeps_the_crds(
    installed: list[dict[str, Any]], helm: Helm, kubectl: Kubectl, release_ns: str
) -> None:
    helm("uninstall", RELEASE, "-n", release_ns, "--wait", "--timeout=60s")
    for crd in CRDS:
        live = get_json(kubectl, "crd", crd)
        assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    gone = kubectl.run("get", "deployment", FULL, "-n", release_ns)
    assert "NotFound" in gone.stderr
    for kind, name in (("clusterrole", FULL), ("clusterrolebinding", f"{FULL}-agent")):
        assert "NotFound" in kubectl.run("get", kind, name).stderr


# --- the kubectl path ----------------------------------------------------------------------------


def test_install_manifest_is_accepted_by_the_api_server(kubectl: Kubectl) -> None:
    """``kubectl apply --server-side`` of manifests/install.yaml, as a server-side dry run (the
    API server validates and admits every object, nothing is stored) after creating its
    Namespace for real: namespaced objects cannot be dry-run into a namespace that is not there.
    """
    manifest = REPO / "manifests" / "install.yaml"
    namespace = next(d for d in yaml.safe_load_all(manifest.read_text()) if d)
    assert namespace["kind"] == "Namespace"
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(namespace))
    try:
        out = kubectl(
            "apply", "--server-side", "--force-conflicts", "--dry-run=server",
            "--field-manager=install-yaml-check", "-f", str(manifest),
        )  # fmt: skip
        applied = [line for line in out.splitlines() if "(server dry run)" in line]
        documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        assert len(applied) == len(documents), out
    finally:
        kubectl("delete", "namespace", namespace["metadata"]["name"], "--wait=true", timeout=120)
