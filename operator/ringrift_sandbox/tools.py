"""Where the sandbox's binaries are: the cache that ``hack/build-tools.sh`` fills
(``$RINGRIFT_CACHE/bin``, default ``~/.cache/ringrift-operator/bin``), else ``$PATH``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)


def tools_bindir() -> Path:
    cache = os.environ.get("RINGRIFT_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ringrift-operator"
    )
    return Path(cache) / "bin"


def find_tool(name: str) -> Path:
    """The path of one sandbox binary; FileNotFoundError says how to build it."""
    candidate = tools_bindir() / name
    if candidate.exists():
        return candidate.resolve()
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"{name} not found in {tools_bindir()} or on PATH: run `make tools` (hack/build-tools.sh)"
    )
