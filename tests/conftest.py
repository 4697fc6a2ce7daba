"""Shared fixtures. e2e tests get one real sandbox cluster per session (``sandbox``); a missing
binary or a failed start is an error, never a skip, so a broken sandbox cannot pass as green.
With ``RINGRIFT_E2E_KUBECONFIG`` set (``make kind-e2e``) they run against that cluster instead,
and tests that need what only the sandbox has skip, naming it (tests/support/cluster_support.py)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# CI runs the property tests on a fixed set of examples, so a green main stays green; locally
# they explore new examples every run.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

E2E_NODES = os.environ.get(
    "RINGRIFT_E2E_NODES", "h100:2,gh200:1,a100:2,l40s:2,rtx4090:2,rtx3090:1,cpu:2,small:1"
)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cluster_support import ExistingCluster, existing_kubeconfig
    from ringrift_sandbox.cluster import Sandbox

    existing = existing_kubeconfig()
    if existing is not None:  # make kind-e2e: the chart is installed there already
        yield ExistingCluster(existing, tmp_path_factory.mktemp("existing-cluster"))
        return
    # SIGTERM (CI timeouts, `kill`) should tear the cluster down like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    directory = Path(os.environ.get("RINGRIFT_SANDBOX_DIR") or tmp_path_factory.mktemp("sandbox"))
    box = Sandbox(directory, nodes=E2E_NODES, audit=True)  # audit: who wrote what, when
    box.start()
    print(f"\nsandbox started in {box.timings['start']:.1f}s at {directory}")
    try:
        yield box
    finally:
        box.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def api_client(sandbox: Any) -> Iterator[Any]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: Any, sandbox: Any) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount, deleted afterwards."""
    from kubernetes import client

    from ringrift_sandbox.cluster import wait_for

    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        f"default ServiceAccount in {name}",
        lambda: core.read_namespaced_service_account("default", name) is not None,
        timeout=30,
    )
    try:
        yield name
    finally:
        from operator_support import delete_namespace_and_wait

        delete_namespace_and_wait(core, name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is marked e2e. The long chaos variants (marked ``chaos``) run
    only when asked for by a marker expression that names them (``-m chaos``, as
    ``make chaos-faults`` does); every other run deselects them — their short variants are
    ordinary tests."""
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
    if "chaos" in (config.option.markexpr or ""):
        return
    chaos = [item for item in items if item.get_closest_marker("chaos")]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if not item.get_closest_marker("chaos")]


@pytest.fixture(scope="session")
def simulator(sandbox: Any) -> Any:
    """The workload simulator the sandbox runs: plays the container of the operator's pods."""
    assert sandbox.simulator is not None
    return sandbox.simulator


@pytest.fixture(scope="session")
def operator(
    sandbox: Any, crds_installed: Any, core: Any, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """The operator, run as its own process (``ringrift-operator run``) against the sandbox;
    on an existing cluster, the one the chart installed there."""
    from cluster_support import InstalledOperator, on_existing_cluster
    from operator_support import start_operator

    if on_existing_cluster():
        installed = InstalledOperator(core)
        assert installed.alive(), f"no running operator pod in {installed.namespace}"
        yield installed
        return
    request.getfixturevalue("simulator")

    token_file = sandbox.directory / "agent-token"
    proc = start_operator(
        sandbox, name="operator", env={"RINGRIFT_AGENT_TOKEN_FILE": str(token_file)}
    )
    try:
        yield proc
    finally:
        proc.stop()
