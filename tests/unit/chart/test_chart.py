"""The Helm chart, rendered with ``helm template`` for several value sets: which objects exist,
restricted security contexts, the exact RBAC rules, probes, volumes, labels and selectors, the
strict values schema, and the generated files (CRD copies, manifests/install.yaml, the values
table in docs/install.md) being current. Needs the helm binary (``make tools``), no cluster."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ringrift_operator.api.settings import OperatorSettings, load_settings

REPO = Path(__file__).resolve().parents[3]
Obj = dict[str, Any]


def _load_render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_install", REPO / "hack/render_install.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_install"] = module
    spec.loader.exec_module(module)
    return module


render_install = _load_render_module()
CHART = render_install.CHART
NS = "ringrift-system"
RELEASE = "rr"
FULL = "rr-ringrift-operator"

VALUE_SETS: dict[str, dict[str, str]] = {
    "default": {},
    "crds-off": {"crds.install": "false"},
    "keep-off": {"crds.keep": "false"},
    "existing-secret": {
        "agent.token.existingSecret": "my-token",
        "agent.token.existingSecretKey": "tok",
    },
    "pvc": {"operator.history.persistence.enabled": "true", "operator.replicas": "1"},
    "monitoring": {
        "metrics.serviceMonitor.enabled": "true",
        "metrics.prometheusRule.enabled": "true",
    },
    "replicas-1": {"operator.replicas": "1"},
    "custom-image": {"image.repository": "registry.example.com/rr/op", "image.tag": "v9"},
    "agent-off": {"agent.enabled": "false"},
    "custom-ports": {
        "operator.http.port": "9090",
        "operator.http.livenessPath": "/live",
        "operator.http.readinessPath": "/ready",
        "agent.port": "9470",
        "agent.dataDir": "/data/ringrift",
    },
}


# --- rendering -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        path: Path = render_install.find_helm()
    except render_install.HelmNotFound as e:
        pytest.fail(f"{e}: the chart tests need helm", pytrace=False)
    return path


@cache
def _render(helm: Path, sets: tuple[tuple[str, str], ...]) -> tuple[Obj, ...]:
    args = [f"--set={key}={value}" for key, value in sets]
    text = render_install.helm_template(*args, helm=helm, release=RELEASE, namespace=NS)
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., list[Obj]]:
    def run(values: dict[str, str] | None = None) -> list[Obj]:
        return list(_render(helm, tuple(sorted((values or {}).items()))))

    return run


def helm_fails(helm: Path, *args: str) -> str:
    """helm template must fail; returns its stderr."""
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render_install.helm_template(*args, helm=helm, release=RELEASE, namespace=NS)
    return str(failure.value.stderr)


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def kinds(objs: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objs}


def container(workload: Obj, name: str) -> Obj:
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def env_of(c: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def mounts_of(c: Obj) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in c["volumeMounts"]}


def volumes_of(workload: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}


# --- the objects ---------------------------------------------------------------------------------

CRD_NAMES = {"selfplayjobs.ringrift.ai", "trainingruns.ringrift.ai", "syncplans.ringrift.ai"}
DEFAULT_OBJECTS = {
    *(("CustomResourceDefinition", name) for name in CRD_NAMES),
    ("ServiceAccount", FULL),
    ("ServiceAccount", f"{FULL}-agent"),
    ("Secret", f"{FULL}-agent-token"),
    ("ConfigMap", f"{FULL}-settings"),
    ("ClusterRole", FULL),
    ("ClusterRoleBinding", FULL),
    ("Role", FULL),
    ("RoleBinding", FULL),
    ("ClusterRole", f"{FULL}-agent"),
    ("ClusterRoleBinding", f"{FULL}-agent"),
    ("Service", f"{FULL}-metrics"),
    ("Deployment", FULL),
    ("DaemonSet", f"{FULL}-agent"),
    ("PodDisruptionBudget", FULL),
}


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_helm_lint_strict_passes(helm: Path, values: dict[str, str]) -> None:
    sets = [f"--set={key}={value}" for key, value in values.items()]
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), *sets],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_exactly_the_expected_objects(render: Any) -> None:
    assert kinds(render()) == DEFAULT_OBJECTS


@pytest.mark.parametrize(
    ("values", "added", "removed"),
    [
        pytest.param(
            VALUE_SETS["crds-off"],
            set(),
            {("CustomResourceDefinition", n) for n in CRD_NAMES},
            id="crds-off",
        ),
        pytest.param(VALUE_SETS["keep-off"], set(), set(), id="keep-off"),
        pytest.param(
            VALUE_SETS["existing-secret"],
            set(),
            {("Secret", f"{FULL}-agent-token")},
            id="existing-secret",
        ),
        pytest.param(
            VALUE_SETS["pvc"],
            {("PersistentVolumeClaim", f"{FULL}-history")},
            {("PodDisruptionBudget", FULL)},
            id="pvc",
        ),
        pytest.param(
            VALUE_SETS["monitoring"],
            {("ServiceMonitor", FULL), ("PrometheusRule", FULL)},
            set(),
            id="monitoring",
        ),
        pytest.param(
            VALUE_SETS["replicas-1"], set(), {("PodDisruptionBudget", FULL)}, id="replicas-1-no-pdb"
        ),
        pytest.param(
            VALUE_SETS["agent-off"],
            set(),
            {
                ("DaemonSet", f"{FULL}-agent"),
                ("ServiceAccount", f"{FULL}-agent"),
                ("ClusterRole", f"{FULL}-agent"),
                ("ClusterRoleBinding", f"{FULL}-agent"),
            },
            id="agent-off",
        ),
        pytest.param(
            {"rbac.create": "false"},
            set(),
            {(k, n) for k, n in DEFAULT_OBJECTS if k.endswith(("Role", "RoleBinding"))},
            id="rbac-off",
        ),
        pytest.param(
            {"metrics.service.enabled": "false"},
            set(),
            {("Service", f"{FULL}-metrics")},
            id="service-off",
        ),
    ],
)
def test_value_sets_add_and_remove_objects(
    render: Any, values: dict[str, str], added: set[Any], removed: set[Any]
) -> None:
    assert kinds(render(values)) == (DEFAULT_OBJECTS - removed) | added


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_every_object_is_labelled_and_namespaced(render: Any, values: dict[str, str]) -> None:
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in render(values):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "ringrift-operator", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/component"] in {"operator", "agent", "crds"}
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["kind"]
        else:
            assert obj["metadata"]["namespace"] == NS, obj["kind"]


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_selectors_match_their_pods(render: Any, values: dict[str, str]) -> None:
    objs = render(values)
    operator_pods = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    workloads = [o for o in objs if o["kind"] in {"Deployment", "DaemonSet"}]
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    if len(workloads) == 2:  # the operator's and the agent's selectors must not overlap
        selectors = [w["spec"]["selector"]["matchLabels"] for w in workloads]
        assert not selectors[0].items() <= selectors[1].items()
        assert not selectors[1].items() <= selectors[0].items()
    for obj in objs:
        if obj["kind"] == "Service":
            assert obj["spec"]["selector"].items() <= operator_pods.items()
        if obj["kind"] in {"PodDisruptionBudget", "ServiceMonitor"}:
            selected = obj["spec"]["selector"]["matchLabels"]
            target = (
                operator_pods
                if obj["kind"] == "PodDisruptionBudget"
                else one(objs, "Service")["metadata"]["labels"]
            )
            assert selected.items() <= target.items(), obj["kind"]


# --- security ------------------------------------------------------------------------------------

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_containers_are_restricted(render: Any, values: dict[str, str]) -> None:
    for workload in (o for o in render(values) if o["kind"] in {"Deployment", "DaemonSet"}):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork", False) is False
        assert not pod.get("hostPID")
        assert not pod.get("hostIPC")
        for c in pod["containers"]:
            assert c["securityContext"] == RESTRICTED_CONTAINER, c["name"]
            assert "/tmp" in mounts_of(c).values()  # the read-only root's one scratch place


def test_the_agent_data_dir_init_container_has_chown_alone(render: Any) -> None:
    agent = one(render(), "DaemonSet")
    init = container(agent, "prepare-data-dir")
    assert init["command"] == ["chown", "65532:65532", "/var/lib/ringrift"]
    assert init["securityContext"] == {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert mounts_of(init) == {"data": "/var/lib/ringrift"}
    no_init = one(render({"agent.prepareDataDir": "false"}), "DaemonSet")
    assert "initContainers" not in no_init["spec"]["template"]["spec"]


def rules_table(role: Obj) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, resourceName or "", verb) for every combination a role grants."""
    table = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [""]:
                    for verb in rule["verbs"]:
                        table.add((group, resource, name, verb))
    return table


def grants(group: str, resources: list[str], verbs: list[str], name: str = "") -> set[Any]:
    return {(group, r, name, v) for r in resources for v in verbs}


CRS = ["selfplayjobs", "trainingruns", "syncplans"]
EXPECTED_OPERATOR_CLUSTER_RULES = (
    grants("ringrift.ai", CRS, ["get", "list", "watch", "create", "update", "patch", "delete"])
    | grants("ringrift.ai", [f"{r}/status" for r in CRS], ["get", "update", "patch"])
    | grants("ringrift.ai", ["selfplayjobs/finalizers", "trainingruns/finalizers"], ["update"])
    | grants("", ["pods"], ["get", "list", "watch", "create", "delete"])
    | grants("", ["services"], ["create"])
    | grants("", ["pods/binding"], ["create"])
    | grants("", ["nodes"], ["get", "list", "watch"])
    | grants("", ["events"], ["create"])
)


def expected_operator_namespace_rules(*, secret: str) -> set[Any]:
    return (
        grants("coordination.k8s.io", ["leases"], ["create"])
        | grants("coordination.k8s.io", ["leases"], ["get", "update"], name=FULL)
        | grants("", ["configmaps"], ["get"], name=f"{FULL}-settings")
        | grants("", ["secrets"], ["get"], name=secret)
    )


@pytest.mark.parametrize(
    ("values", "secret"),
    [({}, f"{FULL}-agent-token"), (VALUE_SETS["existing-secret"], "my-token")],
    ids=["generated-secret", "existing-secret"],
)
def test_rbac_rules_are_exactly_the_table(render: Any, values: dict[str, str], secret: str) -> None:
    objs = render(values)
    assert rules_table(one(objs, "ClusterRole", FULL)) == EXPECTED_OPERATOR_CLUSTER_RULES
    assert rules_table(one(objs, "Role", FULL)) == expected_operator_namespace_rules(secret=secret)
    assert rules_table(one(objs, "ClusterRole", f"{FULL}-agent")) == grants(
        "", ["nodes"], ["get", "patch"]
    )


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_no_role_has_wildcards_secrets_or_escalation(render: Any, values: dict[str, str]) -> None:
    for role in (o for o in render(values) if o["kind"] in {"ClusterRole", "Role"}):
        for group, resource, name, verb in rules_table(role):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert verb not in {"escalate", "bind", "impersonate"}
            if resource == "secrets":
                assert role["kind"] == "Role"
                assert name
                assert verb == "get"


def test_bindings_bind_each_role_to_its_own_service_account(render: Any) -> None:
    objs = render()
    expected = {FULL: FULL, f"{FULL}-agent": f"{FULL}-agent"}
    for binding in (o for o in objs if o["kind"] in {"ClusterRoleBinding", "RoleBinding"}):
        name = binding["metadata"]["name"]
        assert binding["roleRef"]["name"] == name
        assert binding["roleRef"]["kind"] == binding["kind"].removesuffix("Binding")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": expected[name], "namespace": NS}
        ]
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == FULL
    assert (
        one(objs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == f"{FULL}-agent"
    )


# --- the operator Deployment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "port", "live", "ready"),
    [({}, 8080, "/healthz", "/readyz"), (VALUE_SETS["custom-ports"], 9090, "/live", "/ready")],
    ids=["default", "custom"],
)
def test_operator_probes_and_port(
    render: Any, values: dict[str, str], port: int, live: str, ready: str
) -> None:
    objs = render(values)
    op = container(one(objs, "Deployment"), "operator")
    assert op["ports"] == [{"name": "http-metrics", "containerPort": port, "protocol": "TCP"}]
    assert op["livenessProbe"]["httpGet"] == {"path": live, "port": "http-metrics"}
    assert op["readinessProbe"]["httpGet"] == {"path": ready, "port": "http-metrics"}
    assert op["livenessProbe"]["periodSeconds"] == 10
    service = one(objs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": port, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


def test_operator_volumes_env_and_replicas(render: Any) -> None:
    deploy = one(render(), "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate"}
    op = container(deploy, "operator")
    assert op["image"] == "ghcr.io/ringrift/ringrift-operator:0.1.0"
    assert op["args"] == ["run"]
    assert mounts_of(op) == {
        "settings": "/etc/ringrift-operator",
        "agent-token": "/var/run/ringrift",
        "history": "/var/lib/ringrift-operator",
        "tmp": "/tmp",
    }
    env = env_of(op)
    assert env["RINGRIFT_SETTINGS_FILE"] == "/etc/ringrift-operator/settings.yaml"
    assert "RINGRIFT_AGENT_TOKEN_FILE" not in env  # the settings file says it, once
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    volumes = volumes_of(deploy)
    assert volumes["settings"]["configMap"]["name"] == f"{FULL}-settings"
    assert volumes["history"] == {"name": "history", "emptyDir": {"sizeLimit": "1Gi"}}
    assert volumes["agent-token"]["secret"] == {
        "secretName": f"{FULL}-agent-token",
        "defaultMode": 0o440,
        "items": [{"key": "token", "path": "agent-token"}],
    }
    assert {m["name"] for m in op["volumeMounts"] if m.get("readOnly")} == {
        "settings",
        "agent-token",
    }


def test_operator_history_on_a_claim(render: Any, helm: Path) -> None:
    objs = render(VALUE_SETS["pvc"])
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert volumes_of(deploy)["history"]["persistentVolumeClaim"] == {
        "claimName": f"{FULL}-history"
    }
    claim = one(objs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    existing = render({**VALUE_SETS["pvc"], "operator.history.persistence.existingClaim": "mine"})
    assert "PersistentVolumeClaim" not in {o["kind"] for o in existing}
    assert volumes_of(one(existing, "Deployment"))["history"]["persistentVolumeClaim"] == {
        "claimName": "mine"
    }
    stderr = helm_fails(helm, "--set=operator.history.persistence.enabled=true")
    assert "ReadWriteOnce claim cannot be mounted by several replicas" in stderr


def test_several_replicas_need_leader_election(render: Any, helm: Path) -> None:
    stderr = helm_fails(helm, "--set=settings.leader_election=false")
    assert "would run several active operators" in stderr
    single = render({"settings.leader_election": "false", "operator.replicas": "1"})
    assert one(single, "Deployment")["spec"]["replicas"] == 1


def test_pod_disruption_budget_keeps_one_replica(render: Any) -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "PodDisruptionBudget" not in {o["kind"] for o in render({"operator.replicas": "1"})}


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "ghcr.io/ringrift/ringrift-operator:0.1.0"),
        (VALUE_SETS["custom-image"], "registry.example.com/rr/op:v9"),
        (
            {"image.digest": "sha256:" + "a" * 64, "image.tag": "ignored"},
            "ghcr.io/ringrift/ringrift-operator@sha256:" + "a" * 64,
        ),
    ],
    ids=["default", "repository-and-tag", "digest-wins"],
)
def test_every_container_runs_the_one_image(
    render: Any, values: dict[str, str], image: str
) -> None:
    objs = render({**values, "image.pullPolicy": "Always"})
    for workload in (o for o in objs if o["kind"] in {"Deployment", "DaemonSet"}):
        spec = workload["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            assert (c["image"], c["imagePullPolicy"]) == (image, "Always"), c["name"]


# --- the settings ConfigMap ----------------------------------------------------------------------

CHART_OWNED_SETTINGS = {
    "history_path",
    "agent_token_file",
    "workload.data_host_path",
    "http_port",
    "lease_name",
    "lease_namespace",
}
NOT_IN_VALUES = {"autopilot.seed"}  # for tests: the chart does not offer it


def settings_document(objs: list[Obj]) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(one(objs, "ConfigMap")["data"]["settings.yaml"])
    return document


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_settings_load_as_operator_settings(
    render: Any, values: dict[str, str], tmp_path: Path
) -> None:
    objs = render(values)
    path = tmp_path / "settings.yaml"
    path.write_text(one(objs, "ConfigMap")["data"]["settings.yaml"])
    settings = load_settings(file=path, environ={})
    deploy = one(objs, "Deployment")
    mounts = mounts_of(container(deploy, "operator"))
    assert Path(settings.history_path).parent == Path(mounts["history"])
    assert settings.agent_token_file == f"{mounts['agent-token']}/agent-token"
    port = container(deploy, "operator")["ports"][0]["containerPort"]
    assert (settings.http_port, settings.lease_name, settings.lease_namespace) == (port, FULL, NS)
    secret = volumes_of(deploy)["agent-token"]["secret"]
    assert [item["path"] for item in secret["items"]] == ["agent-token"]
    data_dir = values.get("agent.dataDir", "/var/lib/ringrift")
    assert settings.workload.data_host_path == data_dir
    if values.get("agent.enabled") != "false":
        agent = one(objs, "DaemonSet")
        assert volumes_of(agent)["data"]["hostPath"] == {
            "path": data_dir,
            "type": "DirectoryOrCreate",
        }


def test_settings_values_pass_through(render: Any, tmp_path: Path) -> None:
    objs = render(
        {
            "settings.workers": "32",
            "settings.workload.image": "example.com/ai:1",
            "settings.namespace": "games",
        }
    )
    path = tmp_path / "settings.yaml"
    path.write_text(one(objs, "ConfigMap")["data"]["settings.yaml"])
    settings = load_settings(file=path, environ={})
    assert (settings.workers, settings.workload.image, settings.namespace) == (
        32,
        "example.com/ai:1",
        "games",
    )
    before = one(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    after = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/settings"] != after["checksum/settings"]  # a change rolls the pods


def _model_paths(model: type[Any], prefix: str = "") -> set[str]:
    paths = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            paths |= _model_paths(annotation, f"{prefix}{name}.")
        else:
            paths.add(f"{prefix}{name}")
    return paths


def test_settings_schema_matches_operator_settings() -> None:
    """values.settings declares every OperatorSettings field but the ones the chart sets."""
    schema = render_install.load_schema()["properties"]["settings"]
    declared = {
        path for path, sub in render_install.schema_paths(schema) if "properties" not in sub
    }
    assert declared == _model_paths(OperatorSettings) - CHART_OWNED_SETTINGS - NOT_IN_VALUES


def test_settings_defaults_are_the_operators_defaults(render: Any, tmp_path: Path) -> None:
    """The chart's default settings change nothing but the paths and names the chart owns."""
    path = tmp_path / "settings.yaml"
    path.write_text(one(render(), "ConfigMap")["data"]["settings.yaml"])
    rendered = load_settings(file=path, environ={}).model_dump()
    defaults = OperatorSettings().model_dump()
    for dotted in _model_paths(OperatorSettings) - CHART_OWNED_SETTINGS:
        keys = dotted.split(".")
        assert _dig(rendered, keys) == _dig(defaults, keys), dotted


def _dig(data: dict[str, Any], keys: list[str]) -> Any:
    for key in keys:
        data = data[key]
    return data


# --- the agent DaemonSet -------------------------------------------------------------------------


def test_agent_runs_on_work_nodes_and_reaches_out_by_pod_ip(render: Any) -> None:
    agent = one(render(), "DaemonSet")
    pod = agent["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
            ]
        },
        {"matchExpressions": [{"key": "ringrift.ai/worker", "operator": "In", "values": ["true"]}]},
    ]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["hostNetwork"] is False
    main = container(agent, "agent")
    assert main["args"] == [
        "agent",
        "--data-dir=/var/lib/ringrift",
        "--listen=0.0.0.0:8470",
        "--token-file=/var/run/ringrift/agent-token",
        "--log-level=INFO",
    ]
    env = env_of(main)
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert main["ports"] == [{"name": "agent", "containerPort": 8470, "protocol": "TCP"}]
    assert "hostPort" not in main["ports"][0]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent"}
    assert mounts_of(main) == {
        "data": "/var/lib/ringrift",
        "agent-token": "/var/run/ringrift",
        "tmp": "/tmp",
    }


# --- the token Secret ----------------------------------------------------------------------------


def test_generated_token_is_long_and_printable(render: Any) -> None:
    secret = one(render(), "Secret")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48
    assert token.isalnum()


def test_existing_secret_is_mounted_with_its_key(render: Any) -> None:
    objs = render(VALUE_SETS["existing-secret"])
    assert "Secret" not in {o["kind"] for o in objs}
    for workload in (o for o in objs if o["kind"] in {"Deployment", "DaemonSet"}):
        assert volumes_of(workload)["agent-token"]["secret"] == {
            "secretName": "my-token",
            "defaultMode": 0o440,
            "items": [{"key": "tok", "path": "agent-token"}],
        }


# --- CRDs ----------------------------------------------------------------------------------------


def test_chart_crds_are_the_committed_crds(render: Any) -> None:
    committed = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        committed[crd["metadata"]["name"]] = crd
    rendered = {
        o["metadata"]["name"]: o for o in render() if o["kind"] == "CustomResourceDefinition"
    }
    assert set(rendered) == set(committed) == CRD_NAMES
    for name, crd in rendered.items():
        assert crd["spec"] == committed[name]["spec"], name
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/component"] == "crds"


def test_crds_without_keep_have_no_resource_policy(render: Any) -> None:
    for crd in (
        o for o in render(VALUE_SETS["keep-off"]) if o["kind"] == "CustomResourceDefinition"
    ):
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_chart_crd_copies_are_current() -> None:
    expected, actual = render_install.expected_crd_copies(), render_install.actual_crd_copies()
    assert actual.keys() == expected.keys(), "run `make install-manifest`"
    stale = [name for name in expected if actual[name] != expected[name]]
    assert not stale, (
        f"the chart's files/crds differ from crds/: {stale}; run `make install-manifest`"
    )


# --- monitoring ----------------------------------------------------------------------------------


def test_service_monitor_and_prometheus_rule(render: Any) -> None:
    objs = render(VALUE_SETS["monitoring"])
    monitor = one(objs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "http-metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    rule = one(objs, "PrometheusRule")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {
        "RingRiftOperatorDown",
        "RingRiftReconcileErrorsRising",
        "RingRiftNoGPUUtilisation",
    }
    assert f'service="{FULL}-metrics"' in alerts["RingRiftOperatorDown"]["expr"]
    assert alerts["RingRiftOperatorDown"]["labels"]["severity"] == "critical"


# --- the values schema and documentation ---------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "bogus",
        "operator.bogus",
        "operator.http.bogus",
        "agent.token.bogus",
        "settings.bogus",
        "settings.workload.bogus",
        "metrics.serviceMonitor.bogus",
        "crds.bogus",
    ],
)
def test_schema_rejects_unknown_keys(helm: Path, key: str) -> None:
    stderr = helm_fails(helm, f"--set={key}=1")
    assert "additional properties 'bogus' not allowed" in stderr


@pytest.mark.parametrize(
    "setting",
    [
        "image.pullPolicy=Sometimes",
        "operator.replicas=-1",
        "agent.logLevel=LOUD",
        "settings.workers=0",
        "agent.dataDir=relative/path",
        "operator.http.port=70000",
    ],
)
def test_schema_rejects_bad_values(helm: Path, setting: str) -> None:
    assert "values don't meet the specifications" in helm_fails(helm, f"--set={setting}")


def test_every_defined_schema_level_is_closed() -> None:
    for path, sub in [
        ("<root>", render_install.load_schema()),
        *render_install.schema_paths(render_install.load_schema()),
    ]:
        if "properties" in sub:
            assert sub.get("additionalProperties") is False, path


def _value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        sub = schema.get("properties", {}).get(key, {})
        if "properties" in sub and isinstance(value, dict):
            paths |= _value_paths(value, sub, f"{path}.")
    return paths


def test_values_yaml_declares_exactly_the_schema_keys_each_documented() -> None:
    schema = render_install.load_schema()
    declared = {path for path, _ in render_install.schema_paths(schema)}
    assert _value_paths(render_install.load_values(), schema) == declared
    docs = render_install.value_comments((CHART / "values.yaml").read_text())
    undocumented = sorted(declared - {path for path, text in docs.items() if text})
    assert not undocumented, f"values.yaml keys without a `# --` comment: {undocumented}"


def test_install_doc_values_table_is_current_and_complete() -> None:
    document = (REPO / "docs/install.md").read_text()
    table = render_install.render_values_table()
    assert document == render_install.with_values_table(document, table), (
        "run `make install-manifest`"
    )
    leaves = {
        p
        for p, sub in render_install.schema_paths(render_install.load_schema())
        if "properties" not in sub
    }
    assert leaves
    assert all(f"| `{leaf}` |" in document for leaf in leaves)


def test_install_manifest_is_current(helm: Path) -> None:
    current = (REPO / "manifests/install.yaml").read_text()
    assert current == render_install.render_install_manifest(helm=helm), (
        "manifests/install.yaml is stale: run `make install-manifest`"
    )


def test_install_manifest_has_the_namespace_and_no_token(helm: Path) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests/install.yaml").read_text()) if d]
    assert docs[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NS,
            "labels": {
                "app.kubernetes.io/part-of": "ringrift",
                "pod-security.kubernetes.io/enforce": "privileged",
            },
        },
    }
    assert "Secret" not in {d["kind"] for d in docs}
    namespaced = [d for d in docs[1:] if "namespace" in d["metadata"]]
    assert namespaced
    assert all(d["metadata"]["namespace"] == NS for d in namespaced)
    token = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": "ringrift-operator-agent-token"}.items() <= next(
        v["secret"] for v in token if v["name"] == "agent-token"
    ).items()
    assert json.dumps(docs)  # plain data: no YAML tags kubectl would choke on
