"""Running the e2e suite against an existing cluster instead of the sandbox.

``RINGRIFT_E2E_KUBECONFIG=<kubeconfig>`` (set by ``make kind-e2e``) points the suite at a cluster
where the chart is already installed — kind with the operator's image, the agent DaemonSet and
pods that run the sample workload for real. The ``sandbox`` fixture then yields an
:class:`ExistingCluster` and the ``operator`` fixture an :class:`InstalledOperator`. Whatever
only the sandbox has (the workload simulator and its rules, node data directories on this
machine, nodes made lost on demand, a local operator process to stop or restart) makes the test
that asks for it skip, naming what it needed. Without the variable nothing here is used: the
sandbox starts, and a sandbox that cannot start is an error, never a skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

EXISTING_KUBECONFIG_ENV = "RINGRIFT_E2E_KUBECONFIG"
OPERATOR_NAMESPACE_ENV = "RINGRIFT_E2E_OPERATOR_NAMESPACE"  # where the chart was installed
DEFAULT_OPERATOR_NAMESPACE = "ringrift-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=ringrift-operator,app.kubernetes.io/component=operator"


def existing_kubeconfig(environ: dict[str, str] | None = None) -> Path | None:
    """The kubeconfig of the existing cluster to test, or None for the sandbox. A set variable
    naming a missing file is an error: the run was meant for a cluster that is not there."""
    env = os.environ if environ is None else environ
    value = env.get(EXISTING_KUBECONFIG_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{EXISTING_KUBECONFIG_ENV}={value}: no such kubeconfig")
    return path


def on_existing_cluster() -> bool:
    return bool(os.environ.get(EXISTING_KUBECONFIG_ENV, "").strip())


def sandbox_only(what: str) -> NoReturn:
    """Skip the running test: it needs ``what``, which only the sandbox provides."""
    pytest.skip(
        f"needs the sandbox's {what}; not available on an existing cluster "
        f"({EXISTING_KUBECONFIG_ENV} is set)"
    )


def skip_module_on_existing_cluster(why: str) -> Any:
    """A module-level ``pytestmark`` for modules that only make sense on the sandbox."""
    return pytest.mark.skipif(
        on_existing_cluster(), reason=f"{why} ({EXISTING_KUBECONFIG_ENV} is set)"
    )


@dataclass
class ExistingCluster:
    """Stands in for ``ringrift_sandbox.cluster.Sandbox`` on an existing cluster: the same
    ``kubeconfig``; any other attribute of the sandbox skips the test that reads it."""

    kubeconfig: Path
    scratch: Path  # a private temporary directory for the session
    timings: dict[str, float] = field(default_factory=lambda: {"start": 0.0})

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the dataclass does not have: the sandbox's own
        # (directory, simulator, agent_fleet, node_data_dir, set_node_lost, nodes, pki …).
        if name.startswith("__"):
            raise AttributeError(name)
        sandbox_only(name)


@dataclass
class InstalledOperator:
    """Stands in for the e2e suite's ``OperatorProcess`` when the operator runs in the cluster
    (installed by the chart): its log is the log of its pods; stopping, restarting or reaching
    its port from here skips the test."""

    core: Any  # kubernetes.client.CoreV1Api
    namespace: str = field(
        default_factory=lambda: os.environ.get(OPERATOR_NAMESPACE_ENV, DEFAULT_OPERATOR_NAMESPACE)
    )

    def pods(self) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(self.namespace, label_selector=OPERATOR_SELECTOR).items
        )

    def alive(self) -> bool:
        return any(p.status.phase == "Running" for p in self.pods())

    def pause(self, *, timeout: float = 120) -> list[tuple[str, int]]:
        """Scale the operator's Deployments to 0 and wait until its pods are gone; returns
        what to give :meth:`resume`."""
        from kubernetes import client

        from tests_support import poll

        apps = client.AppsV1Api(self.core.api_client)
        scaled = []
        for d in apps.list_namespaced_deployment(
            self.namespace, label_selector=OPERATOR_SELECTOR
        ).items:
            scaled.append((d.metadata.name, d.spec.replicas or 0))
            apps.patch_namespaced_deployment_scale(
                d.metadata.name, self.namespace, {"spec": {"replicas": 0}}
            )
        poll(self.pods, until=lambda pods: not pods, timeout=timeout, what="operator pods gone")
        return scaled

    def resume(self, scaled: list[tuple[str, int]], *, timeout: float = 180) -> None:
        from kubernetes import client

        from tests_support import poll

        if not scaled:
            return
        apps = client.AppsV1Api(self.core.api_client)
        for name, replicas in scaled:
            apps.patch_namespaced_deployment_scale(
                name, self.namespace, {"spec": {"replicas": replicas}}
            )
        poll(self.alive, until=bool, timeout=timeout, what="operator pods running again")

    def log(self) -> str:
        return "".join(
            self.core.read_namespaced_pod_log(p.metadata.name, self.namespace, container="operator")
            for p in self.pods()
            if p.status.phase == "Running"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        sandbox_only(f"local operator process ({name})")
