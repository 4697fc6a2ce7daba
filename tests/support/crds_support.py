"""Helpers for e2e tests that use the CRDs: kubectl against the sandbox, installing the CRDs,
reading the API server's validation errors, and the corpus of invalid resources under
``tests/e2e/invalid/``.

The corpus is data, not code: one YAML file per kind, each with a valid ``base`` resource and
``cases`` that break it with a JSON merge patch (RFC 7386: ``null`` removes a key). Three tags
build oversize input without pasting it: ``!repeat {text: x, times: 1025}`` (a string),
``!items {format: "node-{}", count: 65}`` (a list of distinct strings) and
``!entries {format: "k{}", value: v, count: 33}`` (a map).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringrift_operator.api import crdgen
from ringrift_operator.api.common import GROUP, VERSION
from tests_support import poll

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
EXAMPLES_DIR = REPO / "manifests" / "examples"
INVALID_DIR = REPO / "tests" / "e2e" / "invalid"

KINDS: dict[str, crdgen.KindInfo] = {info.kind: info for info in crdgen.KINDS}
"""Every kind the operator serves, by kind name (``SelfplayJob``)."""


# --- kubectl ---------------------------------------------------------------------------------


class KubectlError(AssertionError):
    """kubectl exited non-zero; the message carries the command and its stderr."""

    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}"
        )


@dataclass(frozen=True)
class Kubectl:
    """The sandbox's kubectl with the sandbox's kubeconfig and a private discovery cache (a
    stale cache from an earlier sandbox on the same port would hide freshly installed CRDs)."""

    binary: Path
    kubeconfig: Path
    cache_dir: Path

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl and return the finished process, whatever its exit code."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.cache_dir),
        }
        return subprocess.run(
            [str(self.binary), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        """Run kubectl, fail with its stderr unless it exits 0, return its stdout."""
        result = self.run(*args, input=input, timeout=timeout)
        if result.returncode != 0:
            raise KubectlError(list(args), result)
        return result.stdout


# --- installing the CRDs ---------------------------------------------------------------------


def crd_documents() -> dict[str, dict[str, Any]]:
    """The committed CRDs (``crds/*.yaml``), by kind."""
    docs = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        docs[crd["spec"]["names"]["kind"]] = crd
    return docs


def _condition(crd: Any, type_: str) -> str | None:
    for condition in (crd.status.conditions if crd.status else None) or []:
        if condition.type == type_:
            return str(condition.status)
    return None


def install_crds(kubectl: Kubectl, apiextensions: Any, *, timeout: float = 60) -> dict[str, Any]:
    """Server-side apply every CRD in ``crds/`` and wait until each is Established, served in
    discovery and published in the OpenAPI document (``kubectl explain`` reads that).
    Idempotent: applying again is a no-op, and a previous owner's fields are taken over."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ringrift-e2e",
        "-f",
        str(CRD_DIR),
    )
    docs = crd_documents()
    for crd in docs.values():
        name = crd["metadata"]["name"]
        poll(
            lambda name=name: apiextensions.read_custom_resource_definition(name),
            until=lambda c: (
                _condition(c, "Established") == "True" and _condition(c, "NamesAccepted") == "True"
            ),
            timeout=timeout,
            what=f"CRD {name} Established",
        )
    plurals = {crd["spec"]["names"]["plural"] for crd in docs.values()}
    poll(
        lambda: json.loads(kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}")),
        until=lambda d: plurals <= {r["name"] for r in d["resources"]},
        timeout=timeout,
        what=f"{sorted(plurals)} in discovery",
    )
    poll(
        lambda: json.loads(kubectl("get", "--raw", f"/openapi/v3/apis/{GROUP}/{VERSION}")),
        until=lambda d: all(
            any(k.endswith(f".{kind}") for k in d["components"]["schemas"]) for kind in docs
        ),
        timeout=timeout,
        what="the CRD schemas in the OpenAPI v3 document",
    )
    return docs


# --- API errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiError:
    """The parts of a failed API call's Status that tests assert on."""

    status: int
    reason: str
    message: str
    causes: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, exc: Any) -> ApiError:
        """From a ``kubernetes.client.ApiException``."""
        try:
            body = json.loads(exc.body)
        except (TypeError, ValueError):
            body = {"message": str(exc.body)}
        return cls(
            status=int(exc.status),
            reason=str(body.get("reason", "")),
            message=str(body.get("message", "")),
            causes=list((body.get("details") or {}).get("causes") or []),
        )

    def fields(self) -> list[str]:
        """The field paths the causes name (``<nil>`` for rules at the root)."""
        return [c.get("field", "") for c in self.causes]

    def names(self, path: str) -> bool:
        """Whether the error names ``path``: in its message, and in one of its causes (by the
        cause's field, or in the cause's message for rules reported at the root) if any."""
        if path not in self.message:
            return False
        if not self.causes:
            return True
        return any(
            c.get("field", "").startswith(path) or path in c.get("message", "") for c in self.causes
        )

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason}: {self.message} (fields: {self.fields()})"


# --- the invalid-resource corpus -------------------------------------------------------------


class _CorpusLoader(yaml.SafeLoader):
    """SafeLoader with the corpus's three generator tags."""


def _repeat(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    spec = loader.construct_mapping(node)  # type: ignore[arg-type]
    return str(spec["text"]) * int(spec["times"])


def _items(loader: yaml.SafeLoader, node: yaml.Node) -> list[str]:
    spec = loader.construct_mapping(node)  # type: ignore[arg-type]
    return [str(spec["format"]).format(i) for i in range(int(spec["count"]))]


def _entries(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, str]:
    spec = loader.construct_mapping(node)  # type: ignore[arg-type]
    return {str(spec["format"]).format(i): str(spec["value"]) for i in range(int(spec["count"]))}


_CorpusLoader.add_constructor("!repeat", _repeat)
_CorpusLoader.add_constructor("!items", _items)
_CorpusLoader.add_constructor("!entries", _entries)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, ``None`` removes a key, anything
    else (lists included) replaces. ``target`` is not changed."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class InvalidCase:
    """One invalid resource and how the API server must reject it."""

    id: str
    kind: str
    body: dict[str, Any]
    field: str  # the path the error must name, e.g. spec.players
    message: str = ""  # an extra substring the error message must contain
    status: int = 422  # 422 Invalid; 400 BadRequest for unknown fields under Strict validation
    server_only: bool = False  # a check only the API server makes (not the pydantic models)

    @property
    def plural(self) -> str:
        return KINDS[self.kind].plural


def corpus_bases() -> dict[str, dict[str, Any]]:
    """The valid base resource of each corpus file, by kind."""
    return {doc["kind"]: doc["base"] for doc in _corpus_files()}


def _corpus_files() -> Iterator[dict[str, Any]]:
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_CorpusLoader)
        doc["_file"] = path.name
        yield doc


def invalid_cases() -> list[InvalidCase]:
    """Every case of every corpus file; ids are ``<kind>/<case id>`` and unique."""
    cases: list[InvalidCase] = []
    for doc in _corpus_files():
        kind, base = doc["kind"], doc["base"]
        for raw in doc["cases"]:
            cases.append(
                InvalidCase(
                    id=f"{kind}/{raw['id']}",
                    kind=kind,
                    body=merge_patch(base, raw["patch"]),
                    field=raw["field"],
                    message=raw.get("message", ""),
                    status=int(raw.get("status", 422)),
                    server_only=bool(raw.get("serverOnly", False)),
                )
            )
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate corpus ids: {duplicates}")
    return cases
