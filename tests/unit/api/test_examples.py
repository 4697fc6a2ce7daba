"""Every example under manifests/examples/ parses with the models and validates against the
generated CRD schema (CEL rules excepted: the models mirror them, and the e2e suite dry-runs
the examples against a real API server)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringrift_operator.api import crdgen
from ringrift_operator.api.meta import ResourceBase, to_wire
from ringrift_operator.api.selfplayjob import parse_selfplayjob
from ringrift_operator.api.syncplan import parse_syncplan
from ringrift_operator.api.trainingrun import parse_trainingrun

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "manifests" / "examples"
REQUIRED = {
    "selfplayjob-gpu.yaml",
    "selfplayjob-cpu.yaml",
    "trainingrun.yaml",
    "trainingrun-distributed.yaml",
    "syncplan.yaml",
    "syncplan-top-n.yaml",
}
PARSERS: dict[str, Callable[[Mapping[str, Any]], ResourceBase]] = {
    "SelfplayJob": parse_selfplayjob,
    "TrainingRun": parse_trainingrun,
    "SyncPlan": parse_syncplan,
}


def documents() -> list[Any]:
    return [
        pytest.param(document, id=f"{path.name}#{index}")
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for index, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        if document is not None
    ]


def missing_from(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks or changes something ``expected`` says (defaults may be added)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return [
            m
            for key, value in expected.items()
            for m in (
                missing_from(value, actual[key], f"{path}.{key}")
                if key in actual
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            m
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for m in missing_from(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [path]


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """A small validator for the structural subset the CRDs use; unknown fields are errors
    (the API server would prune them, and kubectl's strict field validation rejects them)."""
    kind = schema.get("type")
    checks: list[tuple[bool, str]] = [
        (kind == "object" and not isinstance(value, dict), "not an object"),
        (kind == "array" and not isinstance(value, list), "not a list"),
        (kind == "string" and not isinstance(value, str), "not a string"),
        (kind == "boolean" and not isinstance(value, bool), "not a boolean"),
        (
            kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)),
            "not an integer",
        ),
    ]
    errors = [f"{path}: {message}" for failed, message in checks if failed]
    if errors:
        return errors
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        errors.append(f"{path}: {value} out of range")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            errors.append(f"{path}: length {len(value)} out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            errors.append(f"{path}: {len(value)} items out of range")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict) and path != ".metadata":
        limits = (schema.get("minProperties", 0), schema.get("maxProperties", len(value)))
        if not limits[0] <= len(value) <= limits[1]:
            errors.append(f"{path}: {len(value)} entries out of range")
        errors += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, Mapping):
                errors += schema_errors(item, extra, f"{path}.{key}")
            else:
                errors.append(f"{path}.{key}: unknown field")
    return errors


def crd_schema(kind: str) -> Mapping[str, Any]:
    info = next(i for i in crdgen.KINDS if i.kind == kind)
    schema: Mapping[str, Any] = crdgen.build_crd(info)["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def test_required_examples_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} >= REQUIRED


@pytest.mark.parametrize("document", documents())
def test_example_parses_with_the_models(document: dict[str, Any]) -> None:
    resource = PARSERS[document["kind"]](document)
    assert resource.name == document["metadata"]["name"]
    # Nothing the example says is dropped or changed by the models.
    assert missing_from(document["spec"], to_wire(resource)["spec"]) == []


@pytest.mark.parametrize("document", documents())
def test_example_validates_against_the_crd_schema(document: dict[str, Any]) -> None:
    assert schema_errors(document, crd_schema(document["kind"])) == []


@pytest.mark.parametrize("document", documents())
def test_example_with_defaults_validates_against_the_crd_schema(document: dict[str, Any]) -> None:
    # What the operator writes back (defaults filled in) must be acceptable to the API server too.
    wire = to_wire(PARSERS[document["kind"]](document))
    assert schema_errors(wire, crd_schema(document["kind"])) == []


@pytest.mark.parametrize(
    ("kind", "document", "fragment"),
    [
        pytest.param(
            "SelfplayJob",
            {"spec": {"board": "go", "engineMode": "mcts", "games": 1}},
            ".spec.board",
            id="enum",
        ),
        pytest.param(
            "SelfplayJob",
            {"spec": {"board": "hex8", "engineMode": "mcts", "games": 1, "players": 9}},
            ".spec.players",
            id="maximum",
        ),
        pytest.param(
            "SelfplayJob",
            {"spec": {"board": "hex8", "engineMode": "mcts"}},
            ".spec.games: required",
            id="required",
        ),
        pytest.param(
            "SyncPlan",
            {"spec": {"configs": ["x_2p"], "targets": {}}},
            ".spec.configs[0]",
            id="pattern",
        ),
        pytest.param(
            "SyncPlan",
            {"spec": {"configs": ["hex8_2p"], "targets": {"nodes": []}}},
            "unknown field",
            id="unknown-field",
        ),
    ],
)
def test_schema_validator_catches(kind: str, document: dict[str, Any], fragment: str) -> None:
    errors = schema_errors(document, crd_schema(kind))
    assert any(fragment in e for e in errors), errors
