"""Fixtures for e2e tests that need the operator's resources: the sandbox's kubectl and the CRDs
installed and Established."""

from __future__ import annotations

from typing import Any

import pytest

from crds_support import Kubectl, install_crds


@pytest.fixture(scope="session")
def kubectl(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl (the sandbox's build) pointed at the sandbox, with a private discovery cache."""
    from ringrift_sandbox.tools import find_tool

    return Kubectl(
        binary=find_tool("kubectl"),
        kubeconfig=sandbox.kubeconfig,
        cache_dir=tmp_path_factory.mktemp("kubectl-cache"),
    )


@pytest.fixture(scope="session")
def crds_installed(kubectl: Kubectl, api_client: Any) -> dict[str, Any]:
    """``crds/*.yaml`` server-side applied to the sandbox, each Established, in discovery and in
    the OpenAPI document. Returns the committed CRD documents by kind. Safe to request from
    any test: it runs once per session and re-applying is a no-op."""
    from kubernetes import client

    return install_crds(kubectl, client.ApiextensionsV1Api(api_client))


@pytest.fixture(scope="module")
def no_operator(sandbox: Any) -> Any:
    """Pause every operator the tests started (they would write status into this module's
    objects), and start them again afterwards."""
    from cluster_support import InstalledOperator, on_existing_cluster
    from operator_support import LIVE, restart_in_place

    if on_existing_cluster():  # the chart's operator: scaled to 0 and back
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        installed = InstalledOperator(client.CoreV1Api(api))
        scaled = installed.pause()
        yield
        installed.resume(scaled)
        api.close()
        return
    paused = [p for p in LIVE if p.alive()]
    for proc in paused:
        proc.stop()
    yield
    for proc in paused:
        restart_in_place(proc, sandbox, name=proc.log_path.parent.name)
