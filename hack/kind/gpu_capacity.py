#!/usr/bin/env python3
"""Give kind's workers the ``nvidia.com/gpu`` capacity their GPU Feature Discovery labels claim.

kind nodes have no GPUs and no device plugin. Every node labelled ``nvidia.com/gpu.count=N``
(hack/kind/kind-config.yaml) gets ``status.capacity["nvidia.com/gpu"] = N`` through the Node's
``status`` subresource — the documented way to advertise an extended resource — and the kubelet
copies it into ``allocatable`` on its next status update; this script waits until it has. Run by
``make kind-up`` (and ``make kind-gpus``); idempotent.

Usage: gpu_capacity.py [--kubeconfig FILE] [--kubectl PATH] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
COUNT_LABEL = "nvidia.com/gpu.count"


def wanted_capacity(nodes: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Node name → GPUs its ``nvidia.com/gpu.count`` label claims (nodes without it: none)."""
    wanted = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        count = (meta.get("labels") or {}).get(COUNT_LABEL)
        if count is None:
            continue
        if not count.isdigit():
            raise ValueError(f"node {meta.get('name')}: {COUNT_LABEL}={count!r} is not a count")
        wanted[meta["name"]] = int(count)
    return wanted


def _resource(node: dict[str, Any], field: str) -> str | None:
    value = ((node.get("status") or {}).get(field) or {}).get(GPU_RESOURCE)
    return None if value is None else str(value)


def plan_patches(nodes: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node name → the status merge patch it still needs (already patched nodes: none)."""
    nodes = list(nodes)
    wanted = wanted_capacity(nodes)
    patches = {}
    for node in nodes:
        name = node["metadata"]["name"]
        if name in wanted and _resource(node, "capacity") != str(wanted[name]):
            patches[name] = {"status": {"capacity": {GPU_RESOURCE: str(wanted[name])}}}
    return patches


def is_settled(nodes: Iterable[dict[str, Any]]) -> bool:
    """Every labelled node shows its GPUs as allocatable."""
    nodes = list(nodes)
    wanted = wanted_capacity(nodes)
    return all(
        _resource(n, "allocatable") == str(wanted[n["metadata"]["name"]])
        for n in nodes
        if n["metadata"]["name"] in wanted
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig")
    parser.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    base = [args.kubectl] + ([f"--kubeconfig={args.kubeconfig}"] if args.kubeconfig else [])

    def nodes() -> list[dict[str, Any]]:
        out = subprocess.run([*base, "get", "nodes", "-o", "json"], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    current = nodes()
    if not wanted_capacity(current):
        print("no node carries a nvidia.com/gpu.count label: nothing to do", file=sys.stderr)
        return 1
    for name, patch in plan_patches(current).items():
        subprocess.run([*base, "patch", "node", name, "--subresource=status", "--type=merge",
                        "-p", json.dumps(patch)], check=True)  # fmt: skip
    deadline = time.monotonic() + args.timeout
    while not is_settled(current := nodes()):
        if time.monotonic() > deadline:
            print(f"nvidia.com/gpu not allocatable after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(2)
    for name, count in sorted(wanted_capacity(current).items()):
        print(f"{name}: {count} x nvidia.com/gpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
