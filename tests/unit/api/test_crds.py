"""The generated CRDs: committed files match the models (the drift test), schemas are structural,
bounded and documented, CEL rules guard what they should, printer columns point at real fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringrift_operator.api import crdgen
from ringrift_operator.api.common import CATEGORY, GROUP, VERSION

ROOT = Path(__file__).resolve().parents[3]
KINDS = {info.kind: info for info in crdgen.KINDS}
KIND_IDS = list(KINDS)

Node = dict[str, Any]


def root_schema(kind: str) -> Node:
    crd = crdgen.build_crd(KINDS[kind])
    schema: Node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every schema node with its path (``.spec.placement.tolerations[]``)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def nodes(kind: str) -> list[tuple[str, Node]]:
    return list(walk(root_schema(kind)))


# --- drift ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KIND_IDS)
def test_committed_crd_matches_models(kind: str) -> None:
    info = KINDS[kind]
    committed = (ROOT / "crds" / info.file_name).read_text(encoding="utf-8")
    assert committed == crdgen.build_files()[info.file_name], (
        f"crds/{info.file_name} is stale: run `ringrift-operator crds --docs-file docs/api.md`"
    )


def test_committed_api_reference_matches_models() -> None:
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    examples = crdgen.read_examples(ROOT / "manifests" / "examples")
    assert committed == crdgen.render_reference(examples), (
        "run `ringrift-operator crds --docs-file docs/api.md`"
    )


def test_the_api_reference_shows_an_example_of_every_kind() -> None:
    examples = crdgen.read_examples(ROOT / "manifests" / "examples")
    reference = crdgen.render_reference(examples)
    sections = reference.split("\n## ")[1:]
    assert len(sections) == len(KIND_IDS)
    for section in sections:
        kind = section.split(" ", 1)[0]
        assert "### Examples" in section, f"{kind}: no example in manifests/examples/"
        assert f"kind: {kind}" in section.split("### Examples", 1)[1]
    assert crdgen.read_examples(ROOT / "no-such-dir") == {}


def test_no_stray_crd_files() -> None:
    generated = set(crdgen.build_files())
    committed = {p.name for p in (ROOT / "crds").glob(f"*.{GROUP}.yaml")}
    assert committed == generated


def test_cli_check_names_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 1
    assert "stale: " in capsys.readouterr().err
    assert crdgen.main(["--output-dir", str(out)]) == 0
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 0
    victim = out / crdgen.KINDS[0].file_name
    victim.write_text(victim.read_text() + "# edited\n")
    assert crdgen.main(["--output-dir", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert str(victim) in err
    assert crdgen.KINDS[1].file_name not in err


def test_generation_is_deterministic() -> None:
    assert crdgen.build_files() == crdgen.build_files()


def test_files_are_valid_yaml_with_header() -> None:
    for name, text in crdgen.build_files().items():
        assert text.startswith("# Generated"), name
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


# --- CRD shape ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        pytest.param("SelfplayJob", "selfplayjobs", ["spj"], id="SelfplayJob"),
        pytest.param("TrainingRun", "trainingruns", ["tr"], id="TrainingRun"),
        pytest.param("SyncPlan", "syncplans", ["sp"], id="SyncPlan"),
    ],
)
def test_names_scope_and_version(kind: str, plural: str, short: list[str]) -> None:
    crd = crdgen.build_crd(KINDS[kind])
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == [CATEGORY]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


# --- structural, bounded, documented -------------------------------------------------------


@pytest.mark.parametrize("kind", KIND_IDS)
def test_every_property_has_a_description(kind: str) -> None:
    # Scalar list items and map values are described by their list or map.
    missing = [
        p
        for p, n in nodes(kind)
        if p != ".metadata"
        and not n.get("description")
        and not (p.endswith(("[]", "{}")) and n["type"] != "object")
    ]
    assert not missing


@pytest.mark.parametrize("kind", KIND_IDS)
def test_schema_is_structural(kind: str) -> None:
    forbidden = {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "title",
        "propertyNames",
        "uniqueItems",
        "const",
        "x-kubernetes-preserve-unknown-fields",
    }
    for path, node in nodes(kind):
        assert not forbidden & set(node), (path, forbidden & set(node))
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), path


@pytest.mark.parametrize("kind", KIND_IDS)
def test_no_floats(kind: str) -> None:
    assert not [p for p, n in nodes(kind) if n.get("type") == "number"]


@pytest.mark.parametrize("kind", KIND_IDS)
def test_input_is_bounded(kind: str) -> None:
    for path, node in nodes(kind):
        if path in {"", ".apiVersion", ".kind", ".metadata"}:
            continue
        kind_of = node["type"]
        if kind_of == "string":
            assert "maxLength" in node or "enum" in node, path
        elif kind_of == "array":
            assert "maxItems" in node, path
        elif kind_of == "integer":
            assert "minimum" in node, path
        elif kind_of == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


@pytest.mark.parametrize("kind", KIND_IDS)
def test_list_types_are_declared_and_map_keys_exist(kind: str) -> None:
    for path, node in nodes(kind):
        if node.get("type") != "array":
            continue
        list_type = node.get("x-kubernetes-list-type")
        assert list_type in {"atomic", "set", "map"}, path
        if list_type == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item["properties"], (path, key)
                assert key in item.get("required", []) or "default" in item["properties"][key]


@pytest.mark.parametrize("kind", KIND_IDS)
def test_conditions_are_a_map_keyed_by_type(kind: str) -> None:
    conditions = root_schema(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


@pytest.mark.parametrize("kind", KIND_IDS)
def test_status_has_observed_generation_and_epoch(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]["properties"]
    assert {"observedGeneration", "epoch", "conditions"} <= set(status)


@pytest.mark.parametrize("kind", KIND_IDS)
def test_every_cel_rule_has_a_message(kind: str) -> None:
    rules = [r for _, n in nodes(kind) for r in n.get("x-kubernetes-validations", [])]
    assert rules
    for rule in rules:
        assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression"}
        assert rule["rule"]
        assert rule["message"]


# --- CEL rules ------------------------------------------------------------------------------


def rules_at(kind: str, path: str) -> list[Node]:
    found: list[Node] = dict(nodes(kind))[path].get("x-kubernetes-validations", [])
    return found


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        pytest.param("SelfplayJob", "board", id="spj-board"),
        pytest.param("SelfplayJob", "players", id="spj-players"),
        pytest.param("SelfplayJob", "engineMode", id="spj-engineMode"),
        pytest.param("TrainingRun", "board", id="tr-board"),
        pytest.param("TrainingRun", "players", id="tr-players"),
    ],
)
def test_immutable_fields(kind: str, field: str) -> None:
    assert {"rule": "self == oldSelf", "message": f"{field} is immutable"} in rules_at(
        kind, f".spec.{field}"
    )


@pytest.mark.parametrize(
    ("kind", "path", "rule_part", "message_part"),
    [
        pytest.param("SelfplayJob", ".spec", "self.gpus >= 1", "spec.gpus", id="gpu-engines"),
        pytest.param(
            "TrainingRun",
            ".spec.gauntlet",
            "self.shards <= self.games",
            "shards",
            id="shards-le-games",
        ),
        pytest.param("TrainingRun", ".spec", "self.nodes == 1", "spec.gpus", id="distributed-gpus"),
        pytest.param(
            "SyncPlan",
            ".spec.targets",
            ".filter(x, x).size() == 1",
            "exactly one",
            id="exactly-one-target",
        ),
        pytest.param(
            "SelfplayJob",
            ".spec.placement.tolerations[]",
            "'Exists'",
            "Exists",
            id="toleration-operator",
        ),
    ],
)
def test_cross_field_rules(kind: str, path: str, rule_part: str, message_part: str) -> None:
    assert any(
        rule_part in r["rule"] and message_part in r["message"] for r in rules_at(kind, path)
    ), rules_at(kind, path)


def test_gpu_engine_rule_lists_every_gpu_engine() -> None:
    from ringrift_operator.api.common import GPU_ENGINE_MODES

    (rule,) = rules_at("SelfplayJob", ".spec")
    for mode in GPU_ENGINE_MODES:
        assert f"'{mode.value}'" in rule["rule"]


@pytest.mark.parametrize(
    ("kind", "path", "default"),
    [
        pytest.param("SelfplayJob", ".spec.dispatchTimeoutSeconds", 300, id="dispatch-timeout"),
        pytest.param("SelfplayJob", ".spec.placement", {}, id="placement-object"),
        pytest.param("TrainingRun", ".spec.cooldownSeconds", 300, id="cooldown"),
        pytest.param("TrainingRun", ".spec.minMemoryGiB", 8, id="min-memory"),
        pytest.param("TrainingRun", ".spec.gauntlet", {}, id="gauntlet-object"),
        pytest.param("SyncPlan", ".spec.maxFilesPerJob", 50, id="max-files"),
        pytest.param("SyncPlan", ".spec.intervalSeconds", 0, id="interval"),
    ],
)
def test_schema_defaults(kind: str, path: str, default: object) -> None:
    assert dict(nodes(kind))[path]["default"] == default


# --- printer columns ----------------------------------------------------------------------


def column_paths() -> list[Any]:
    return [
        pytest.param(kind, column, id=f"{kind}-{column['name']}")
        for kind, info in KINDS.items()
        for column in info.columns
    ]


@pytest.mark.parametrize(("kind", "column"), column_paths())
def test_printer_column_points_at_a_field(kind: str, column: Node) -> None:
    json_path = column["jsonPath"]
    if json_path == ".metadata.creationTimestamp":
        return
    schema_path = json_path  # printer columns use the same dotted form
    node = dict(nodes(kind)).get(schema_path)
    assert node is not None, json_path
    expected = {"string": {"string", "array"}, "integer": {"integer"}, "date": {"string"}}
    assert node["type"] in expected[column["type"]], (json_path, node["type"])


@pytest.mark.parametrize("kind", KIND_IDS)
def test_printer_columns_end_with_age(kind: str) -> None:
    assert KINDS[kind].columns[-1]["name"] == "Age"


@pytest.mark.parametrize("kind", ["SelfplayJob", "TrainingRun", "SyncPlan"])
def test_names_are_bounded_in_the_schema(kind: str) -> None:
    """Names become label values on owned pods: the schema bounds them, so the API server's
    error names metadata.name."""
    name = dict(nodes(kind))[".metadata.name"]
    assert name["maxLength"] == 63
