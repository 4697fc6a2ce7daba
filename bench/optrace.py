"""``python -m bench.optrace --out FILE run --kubeconfig …``: the operator, with timestamps on the
steps of each SelfplayJob's first placement, for ``bench.run --trace``.

The operator's code is not changed: this launcher wraps a few of its functions before it starts
(``Controller.observe`` and ``_reconcile``, the SelfplayJob reconciler's ``_place``,
``fetch_promoted_model``, ``rank_nodes``, ``create_on_node``, ``post_event`` and every API
request) and writes what it saw as JSON when the process exits. Times are ``time.monotonic()``,
the machine-wide clock the benchmark's client uses too, so they line up with its create times.
Tracing costs a few microseconds a call; the plain benchmark runs without it.
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# per job "namespace/name" → step → monotonic time (first occurrence) or durations
FIRST: dict[str, dict[str, float]] = defaultdict(dict)
DURATIONS: dict[str, list[float]] = defaultdict(list)
RECONCILES: dict[str, int] = defaultdict(int)


def _job_key(body_or_job: Any) -> str:
    if isinstance(body_or_job, dict):
        meta = body_or_job.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return f"{body_or_job.namespace}/{body_or_job.name}"


def _first(key: str, step: str) -> None:
    FIRST[key].setdefault(step, time.monotonic())


def _timed_async(label: Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            DURATIONS[label(*args, **kwargs)].append(time.perf_counter() - start)

    return wrapper


def install() -> None:
    from ringrift_operator.kube import client as kube_client
    from ringrift_operator.loops import controller
    from ringrift_operator.reconcilers import selfplayjob as spj
    from ringrift_operator.reconcilers import status

    observe = controller.Controller.observe

    def traced_observe(self: Any, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        if kind == "SelfplayJob":
            _first(_job_key(body), "observed")
        observe(self, kind, event_type, body)

    controller.Controller.observe = traced_observe  # type: ignore[method-assign]

    reconcile = controller.Controller._reconcile

    async def traced_reconcile(self: Any, key: tuple[str, str, str]) -> float | None:
        if key[0] == "SelfplayJob":
            job = f"{key[1]}/{key[2]}"
            _first(job, "reconcile_started")
            RECONCILES[job] += 1
        result: float | None = await reconcile(self, key)
        return result

    controller.Controller._reconcile = traced_reconcile  # type: ignore[method-assign]

    place = spj._place

    async def traced_place(deps: Any, job: Any, decision: Any) -> Any:
        key = _job_key(job)
        _first(key, "place_started")
        try:
            return await place(deps, job, decision)
        finally:
            _first(key, "place_done")

    spj._place = traced_place

    create_on_node = spj.create_on_node

    async def traced_create_on_node(deps: Any, namespace: str, manifest: Any, node: str) -> None:
        key = f"{namespace}/{manifest['metadata']['ownerReferences'][0]['name']}"
        _first(key, "create_started")
        await create_on_node(deps, namespace, manifest, node)
        _first(key, "bound")

    spj.create_on_node = traced_create_on_node

    spj.fetch_promoted_model = _timed_async(  # type: ignore[assignment]
        lambda *a, **k: "fetch_promoted_model", spj.fetch_promoted_model
    )
    status.post_event = _timed_async(lambda *a, **k: "post_event", status.post_event)  # type: ignore[assignment]
    rank = spj.rank_nodes

    def traced_rank(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return rank(*args, **kwargs)
        finally:
            DURATIONS["rank_nodes"].append(time.perf_counter() - start)

    spj.rank_nodes = traced_rank  # type: ignore[assignment]

    request = kube_client.KubeClient.request

    async def traced_request(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await request(self, method, path, **kwargs)
        finally:
            label = f"{method} {kube_client.resource_of(path)}"
            DURATIONS[label].append(time.perf_counter() - start)

    kube_client.KubeClient.request = traced_request  # type: ignore[method-assign]


def dump(path: str) -> None:
    with open(path, "w") as f:
        json.dump({"jobs": FIRST, "durations": DURATIONS, "reconciles": RECONCILES}, f)


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--out":
        sys.exit("usage: python -m bench.optrace --out FILE run [operator arguments]")
    out, rest = args[1], args[2:]
    install()
    atexit.register(dump, out)
    from ringrift_operator.cli import main as operator_main

    sys.argv = ["ringrift-operator", *rest]
    sys.exit(operator_main())


if __name__ == "__main__":
    main()
