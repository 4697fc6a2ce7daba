"""The CRDs in a real API server: they install and become Established, the examples pass a
server-side dry run and come back with the schema's defaults, a corpus of invalid resources is
rejected with errors that name the bad field, CEL guards the immutable fields, `kubectl explain`
and `kubectl get` show what the CRDs declare, and status is a subresource."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from crds_support import (
    EXAMPLES_DIR,
    KINDS,
    ApiError,
    InvalidCase,
    Kubectl,
    corpus_bases,
    install_crds,
    invalid_cases,
)
from ringrift_operator.api import selfplayjob, syncplan, trainingrun
from ringrift_operator.api.common import API_VERSION, CATEGORY, GROUP, VERSION
from ringrift_operator.api.conditions import (
    Condition,
    SelfplayJobConditionType,
    SelfplayJobReason,
    SyncPlanConditionType,
    SyncPlanReason,
    TrainingRunConditionType,
    TrainingRunReason,
    set_condition,
)
from ringrift_operator.api.meta import InvalidResourceError, parse_resource, rfc3339, to_wire

pytestmark = pytest.mark.usefixtures("crds_installed", "no_operator")

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
CASES = invalid_cases()
NOW = datetime.now(UTC).replace(microsecond=0)

# One valid spec per kind, for the tests that create objects and then change them.
VALID_SPECS: dict[str, dict[str, Any]] = {
    "SelfplayJob": {"board": "square8", "players": 3, "engineMode": "maxn", "games": 10, "gpus": 0},
    "TrainingRun": {"board": "square8", "players": 3},
    "SyncPlan": {"configs": ["square8_3p"], "targets": {"topTrainingNodes": 2}},
}
SHORT_NAMES = {info.kind: info.short_names[0] for info in KINDS.values()}


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ns(core: Any) -> Iterator[str]:
    """One namespace for the whole module (objects get unique names)."""
    name = f"crds-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def custom(api_client: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def resource(kind: str, name: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def create(custom: Any, ns: str, kind: str, name: str, spec: Any) -> dict[str, Any]:
    body = resource(kind, name, spec)
    obj: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, KINDS[kind].plural, body, field_validation="Strict"
    )
    return obj


def read(custom: Any, ns: str, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, ns, KINDS[kind].plural, name
    )
    return obj


def patch(custom: Any, ns: str, kind: str, name: str, body: Any) -> dict[str, Any]:
    """A JSON merge patch of the main resource."""
    obj: dict[str, Any] = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, KINDS[kind].plural, name, body
    )
    return obj


def patch_status(custom: Any, ns: str, kind: str, name: str, body: Any) -> dict[str, Any]:
    """A JSON merge patch through the /status subresource."""
    obj: dict[str, Any] = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, KINDS[kind].plural, name, body
    )
    return obj


def rejection(call: Any) -> ApiError:
    with pytest.raises(ApiException) as raised:
        call()
    return ApiError.of(raised.value)


def dig(obj: Any, dotted: str) -> Any:
    """``dig(spec, "placement.tolerations.0.value")``; KeyError/IndexError when absent."""
    for part in dotted.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def has(obj: Any, dotted: str) -> bool:
    try:
        dig(obj, dotted)
    except (KeyError, IndexError):
        return False
    return True


def without_empty_containers(value: Any) -> Any:
    """Drop empty maps and lists: the models default them, the API server leaves them out."""
    if isinstance(value, dict):
        cleaned = {k: without_empty_containers(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_empty_containers(v) for v in value]
    return value


def table(output: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parse `kubectl get` output into its headers and rows (cells cut at the headers' column
    starts, so empty cells and headers with spaces such as LAST SYNC survive)."""
    lines = [line for line in output.splitlines() if line.strip()]
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    headers = [h for _, h in spans]
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, (start, header) in enumerate(spans):
            end = spans[i + 1][0] if i + 1 < len(spans) else len(line)
            cells[header] = line[start:end].strip()
        rows.append(cells)
    return headers, rows


def expected_headers(crd: dict[str, Any], *, wide: bool) -> list[str]:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [c for c in columns if wide or c.get("priority", 0) == 0]
    return ["NAME", *(c["name"].upper() for c in shown)]


# --- 1. installation -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_is_established_with_its_names(
    kind: str, crds_installed: dict[str, Any], api_client: Any
) -> None:
    info = KINDS[kind]
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(info.crd_name)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    accepted = crd.status.accepted_names
    assert (accepted.kind, accepted.plural) == (kind, info.plural)
    assert accepted.short_names == list(info.short_names)
    assert accepted.categories == [CATEGORY]
    assert crds_installed[kind]["spec"]["names"]["plural"] == info.plural


def test_installing_again_is_a_no_op(kubectl: Kubectl, api_client: Any) -> None:
    api = client.ApiextensionsV1Api(api_client)
    before = {i.crd_name: api.read_custom_resource_definition(i.crd_name) for i in KINDS.values()}
    install_crds(kubectl, api)
    for name, crd in before.items():
        again = api.read_custom_resource_definition(name)
        assert again.metadata.resource_version == crd.metadata.resource_version, name
        assert again.metadata.generation == crd.metadata.generation, name


# --- 2. the examples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes_a_server_side_dry_run(
    path: Path, kubectl: Kubectl, custom: Any, ns: str
) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(path))
    assert "(server dry run)" in out
    error = rejection(lambda: read(custom, ns, document["kind"], document["metadata"]["name"]))
    assert error.status == 404  # a dry run stores nothing


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_reads_back_with_the_schema_defaults_the_models_have(
    path: Path, kubectl: Kubectl, custom: Any, ns: str
) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    kind, name = document["kind"], document["metadata"]["name"]
    kubectl("create", "-n", ns, "-f", str(path))
    stored = read(custom, ns, kind, name)
    model = parse_resource(KINDS[kind].resource, document, kind=kind)
    assert stored["spec"] == without_empty_containers(to_wire(model.spec))
    assert "status" not in stored  # only the operator writes status


# Defaults that the examples leave out, filled in by the API server from the CRD schema.
DEFAULTS = [
    ("selfplayjob-cpu", "dispatchTimeoutSeconds", 300),
    ("selfplayjob-cpu", "backoffLimit", 3),
    ("selfplayjob-cpu", "suspend", False),
    ("selfplayjob-cpu", "placement.minGpuClass", "any"),
    ("selfplayjob-gpu", "placement.tolerations.0.value", ""),
    ("selfplayjob-gpu", "suspend", False),
    ("syncplan", "maxFilesPerJob", 50),
    ("syncplan", "mtimeToleranceSeconds", 60),
    ("syncplan", "manifestMaxAgeSeconds", 300),
    ("syncplan", "intervalSeconds", 0),
    ("trainingrun-distributed", "cooldownSeconds", 300),
    ("trainingrun-distributed", "backoffLimit", 3),
    ("trainingrun", "nodes", 1),
    ("trainingrun", "placement.minGpuClass", "any"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("example", "field", "default"), DEFAULTS, ids=[f"{e}-{f}" for e, f, _ in DEFAULTS]
)
def test_server_fills_in_the_default(
    example: str, field: str, default: Any, custom: Any, ns: str
) -> None:
    document = yaml.safe_load((EXAMPLES_DIR / f"{example}.yaml").read_text(encoding="utf-8"))
    kind = document["kind"]
    assert not has(document["spec"], field), f"{example} sets spec.{field} itself"
    name = unique(example)
    created = create(custom, ns, kind, name, document["spec"])
    assert dig(created["spec"], field) == default
    assert dig(read(custom, ns, kind, name)["spec"], field) == default


# --- 3. the invalid-resource corpus ----------------------------------------------------------


# What the corpus must cover (issue #10), by case id; changes to immutable fields are the
# IMMUTABLE table below (they need a stored object to change).
CORPUS_CATEGORIES = {
    "wrong type": r"-(string|integer|float|not-a-list|not-an-object|as-quantity|as-duration)$",
    "out-of-range number": r"(-0|-negative|-over-max|-[15]|-101|-over-an?-\w+|-under-10|overflow)$",
    "unknown engine mode": r"^engine-",
    "huge string, list or map": r"(over-max-(length|items|entries)|10000|mebibyte)",
    "odd name": r"^name-",
    "unknown field": r"^unknown-field",
}


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CASES) >= 50
    assert {c.kind for c in CASES} == set(KINDS)
    assert {c.status for c in CASES} == {400, 422}
    for category, pattern in CORPUS_CATEGORIES.items():
        matching = [c.id for c in CASES if re.search(pattern, c.id.split("/", 1)[1])]
        assert len(matching) >= 3, f"{category}: only {matching}"
    assert len(IMMUTABLE) >= 5


@pytest.mark.parametrize("kind", list(KINDS))
def test_corpus_base_is_valid(kind: str, custom: Any, ns: str) -> None:
    """Each case breaks a valid base, so its rejection is due to its patch alone."""
    base = corpus_bases()[kind]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, KINDS[kind].plural, base, dry_run="All", field_validation="Strict"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_resource_is_rejected_naming_the_field(
    case: InvalidCase, custom: Any, ns: str
) -> None:
    # fieldValidation=Strict is what kubectl sends by default (--validate=strict).
    error = rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, case.plural, case.body, dry_run="All", field_validation="Strict"
        )
    )
    assert error.status == case.status, error
    assert error.reason == ("BadRequest" if case.status == 400 else "Invalid"), error
    assert error.names(case.field), f"{case.field} not named by {error}"
    assert case.message in error.message, error


@pytest.mark.parametrize("case", [c for c in CASES if not c.server_only], ids=lambda c: c.id)
def test_the_models_reject_it_too(case: InvalidCase) -> None:
    """The operator's models agree with the schema, so a body the API server would reject is
    also an InvalidResourceError when parsed (e.g. from a test or an older stored object)."""
    with pytest.raises(InvalidResourceError) as raised:
        parse_resource(KINDS[case.kind].resource, case.body, kind=case.kind)
    # The models name the field, or the object whose rule it breaks (tolerations[0]); list
    # indices may differ (the models report a duplicate at the list).
    text = re.sub(r"\[\d+\]", "", str(raised.value))
    field = re.sub(r"\[\d+\]", "", case.field)
    assert field in text or field.rsplit(".", 1)[0] + ":" in text, text


def test_unknown_fields_are_pruned_with_a_warning_under_the_api_default(
    custom: Any, ns: str
) -> None:
    """Without fieldValidation the API server warns (Warn is its default) and drops the field."""
    name = unique("unknown-field")
    body = resource("SelfplayJob", name, {**VALID_SPECS["SelfplayJob"], "gamez": 500})
    stored, status, headers = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, ns, "selfplayjobs", body
    )
    assert status == 201
    warning = headers.get("Warning", "")
    assert "unknown field" in warning
    assert "spec.gamez" in warning
    assert "gamez" not in stored["spec"]
    assert "gamez" not in read(custom, ns, "SelfplayJob", name)["spec"]


# Server-side apply builds a typed patch from the schema and fails there; the others are
# rejected by strict decoding (kubectl sends fieldValidation=Strict by default).
UNKNOWN_FIELD_REJECTIONS = [
    (["apply", "--server-side"], ".spec.gamez: field not declared in schema"),
    (["apply"], 'unknown field "spec.gamez"'),
    (["create"], 'unknown field "spec.gamez"'),
]


@pytest.mark.parametrize(
    ("command", "message"),
    UNKNOWN_FIELD_REJECTIONS,
    ids=["apply-server-side", "apply-client-side", "create"],
)
def test_kubectl_rejects_unknown_fields_by_default(
    command: list[str], message: str, kubectl: Kubectl, custom: Any, ns: str
) -> None:
    name = unique("unknown-field")
    manifest = yaml.safe_dump(
        resource("SelfplayJob", name, {**VALID_SPECS["SelfplayJob"], "gamez": 500})
    )
    result = kubectl.run(*command, "-n", ns, "-f", "-", input=manifest)
    assert result.returncode != 0
    assert message in result.stderr
    assert rejection(lambda: read(custom, ns, "SelfplayJob", name)).status == 404


# --- 4. immutable fields ---------------------------------------------------------------------


IMMUTABLE = [
    ("SelfplayJob", "board", {"spec": {"board": "hex8"}}, "spec.board", "board is immutable"),
    ("SelfplayJob", "players", {"spec": {"players": 4}}, "spec.players", "players is immutable"),
    ("SelfplayJob", "players-removed", {"spec": {"players": None}}, "spec.players",
     "players is immutable"),  # the default (2) would replace the stored 3
    ("SelfplayJob", "engineMode", {"spec": {"engineMode": "mcts"}}, "spec.engineMode",
     "engineMode is immutable"),
    ("TrainingRun", "board", {"spec": {"board": "square19"}}, "spec.board", "board is immutable"),
    ("TrainingRun", "players", {"spec": {"players": 2}}, "spec.players", "players is immutable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "change", "body", "field", "message"),
    IMMUTABLE,
    ids=[f"{k}-{c}" for k, c, *_ in IMMUTABLE],
)
def test_changing_an_immutable_field_is_rejected(
    kind: str, change: str, body: Any, field: str, message: str, custom: Any, ns: str
) -> None:
    name = unique(kind.lower())
    created = create(custom, ns, kind, name, VALID_SPECS[kind])
    error = rejection(lambda: patch(custom, ns, kind, name, body))
    assert error.status == 422, error
    assert error.names(field), error
    assert message in error.message
    stored = read(custom, ns, kind, name)
    assert stored["spec"] == created["spec"]
    assert stored["metadata"]["generation"] == 1


MUTABLE = [
    ("SelfplayJob", "games", {"spec": {"games": 500}}),
    ("SelfplayJob", "suspend", {"spec": {"suspend": True}}),
    ("SelfplayJob", "placement", {"spec": {"gpus": 2, "placement": {"minGpuClass": "a100"}}}),
    ("SelfplayJob", "same-immutable-values", {"spec": {"board": "square8", "games": 20}}),
    ("TrainingRun", "thresholds", {"spec": {"minNewGames": 5000, "gauntlet": {"games": 200}}}),
    ("SyncPlan", "configs-and-targets",
     {"spec": {"configs": ["square8_3p", "hex8_3p"],
               "targets": {"topTrainingNodes": None, "nodeNames": ["cpu-0"]}}}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "change", "body"), MUTABLE, ids=[f"{k}-{c}" for k, c, _ in MUTABLE]
)
def test_changing_a_mutable_field_is_accepted(
    kind: str, change: str, body: Any, custom: Any, ns: str
) -> None:
    name = unique(kind.lower())
    create(custom, ns, kind, name, VALID_SPECS[kind])
    updated = patch(custom, ns, kind, name, body)
    stored = read(custom, ns, kind, name)
    assert stored["spec"] == updated["spec"]
    for key, value in body["spec"].items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                assert stored["spec"][key].get(sub) == subvalue, f"spec.{key}.{sub}"
        else:
            assert stored["spec"][key] == value, f"spec.{key}"
    assert stored["metadata"]["generation"] == 2


# --- 5. kubectl explain ----------------------------------------------------------------------


EXPLAIN = [
    ("selfplayjob.spec", ["engineMode", "gumbel-mcts", "dispatchTimeoutSeconds",
                          "Seconds the job may wait for a node", "Immutable", "-required-"]),
    ("trainingrun.spec.gauntlet", ["promotionWinRatePercent", "Win rate", "shards",
                                   "at most games", "opponents"]),
    ("syncplan.spec.targets", ["nodeNames", "selector", "topTrainingNodes",
                               "The N best nodes for training"]),
    ("spj.spec.placement.tolerations", ["effect", "NoExecute", "Taint key to tolerate"]),
    ("sp.spec.maxFilesPerJob", ["default 50"]),
    ("tr.status.gauntlet", ["winRatePercent", "eloDelta", "95% Elo interval"]),
]  # fmt: skip


@pytest.mark.parametrize(("path", "words"), EXPLAIN, ids=[p for p, _ in EXPLAIN])
def test_kubectl_explain_prints_the_descriptions(
    path: str, words: list[str], kubectl: Kubectl
) -> None:
    out = kubectl("explain", path)
    assert f"GROUP:      {GROUP}" in out
    flat = " ".join(out.split())  # explain wraps descriptions
    missing = [w for w in words if w not in flat]
    assert not missing, f"{missing} not in `kubectl explain {path}`:\n{out}"


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_explain_reaches_has_a_description(kind: str, kubectl: Kubectl) -> None:
    """Walk the schema the server publishes (what `kubectl explain` reads) below spec and
    status, and check `kubectl explain --recursive` lists every named field."""
    document = json.loads(kubectl("get", "--raw", f"/openapi/v3/apis/{GROUP}/{VERSION}"))
    schema = document["components"]["schemas"][f"ai.ringrift.{VERSION}.{kind}"]
    assert schema.get("description")
    fields = [
        (path, node)
        for top in ("spec", "status")
        for path, node in _walk(schema["properties"][top], top)
        if not path.endswith(("[]", "{}"))  # list items and map values are not fields
    ]
    assert len(fields) > 10
    undocumented = [path for path, node in fields if not node.get("description")]
    assert not undocumented, f"fields without a description: {undocumented}"
    recursive = kubectl("explain", KINDS[kind].plural, "--recursive")
    names = {
        line.split()[0] for line in recursive.splitlines() if line.startswith("  ") and line.strip()
    }
    leafs = {path.replace("[]", "").rsplit(".", 1)[-1] for path, _ in fields}
    assert leafs <= names, f"missing from explain --recursive: {sorted(leafs - names)}"


# --- 6. printer columns and names ------------------------------------------------------------


def _status(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A realistic status for each kind, built from the models, in wire form."""
    now = NOW
    conditions: list[Condition] = []
    if kind == "SelfplayJob":
        t, r = SelfplayJobConditionType, SelfplayJobReason
        for type_, reason in ((t.SCHEDULED, r.NODE_SELECTED), (t.RUNNING, r.POD_RUNNING)):
            conditions = set_condition(
                conditions, type=type_, status="True", reason=reason, generation=1, now=now
            )
        status: Any = selfplayjob.SelfplayJobStatus(
            observed_generation=1,
            phase=selfplayjob.derive_phase(conditions),
            conditions=conditions,
            config=f"{spec['board']}_{spec['players']}p",
            node="gpu-h100-0",
            power_score=9500,
            pod="spj-pod-2",
            attempts=2,
            games_completed=4,
            start_time=rfc3339(now),
            epoch=3,
        )
    elif kind == "TrainingRun":
        t2, r2 = TrainingRunConditionType, TrainingRunReason
        for type_, reason in (
            (t2.DATA_READY, r2.DATA_READY),
            (t2.EXPORTED, r2.EXPORT_SUCCEEDED),
            (t2.TRAINED, r2.TRAINING_SUCCEEDED),
        ):
            conditions = set_condition(
                conditions, type=type_, status="True", reason=reason, generation=1, now=now
            )
        status = trainingrun.TrainingRunStatus(
            observed_generation=1,
            phase=trainingrun.derive_phase(conditions),
            conditions=conditions,
            config=f"{spec['board']}_{spec['players']}p",
            node="gpu-a100-1",
            games_used=1200,
            gauntlet=trainingrun.GauntletResult(
                wins=30, losses=10, draws=0, win_rate_percent=75, elo_delta=191
            ),
            epoch=3,
        )
    else:
        t3, r3 = SyncPlanConditionType, SyncPlanReason
        for type_, reason in (
            (t3.MANIFESTS_COLLECTED, r3.COLLECTED),
            (t3.SYNCED, r3.ALL_FILES_PRESENT),
        ):
            conditions = set_condition(
                conditions, type=type_, status="True", reason=reason, generation=1, now=now
            )
        status = syncplan.SyncPlanStatus(
            observed_generation=1,
            state=syncplan.derive_state(conditions),
            conditions=conditions,
            target_nodes=["gpu-h100-0", "gpu-h100-1"],
            missing_files=0,
            files_synced=120,
            last_sync_time=rfc3339(now - timedelta(days=3)),
            epoch=3,
        )
    return to_wire(status)


# What `kubectl get -o wide` shows for the statuses above (AGE varies and is left out).
SHOWN = {
    "SelfplayJob": {"CONFIG": "square8_3p", "ENGINE": "maxn", "PHASE": "Running",
                    "NODE": "gpu-h100-0", "SCORE": "9500", "DONE": "4", "GAMES": "10",
                    "ATTEMPTS": "2"},
    "TrainingRun": {"CONFIG": "square8_3p", "PHASE": "Evaluating", "NODE": "gpu-a100-1",
                    "GAMES": "1200", "WINRATE": "75", "ELO": "191"},
    "SyncPlan": {"STATE": "Synced", "TARGETS": '["gpu-h100-0","gpu-h100-1"]', "MISSING": "0",
                 "SYNCED": "120", "LAST SYNC": "3d"},
}  # fmt: skip


@pytest.fixture(scope="module")
def printed(custom: Any, core: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """A namespace of its own with one object of each kind (name by kind), so listings are
    exact; the `-with-status` ones also carry a status written through /status."""
    ns = f"crds-get-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    names = {}
    try:
        for kind, spec in VALID_SPECS.items():
            names[kind] = f"{kind.lower()}-plain"
            create(custom, ns, kind, names[kind], spec)
            with_status = f"{kind.lower()}-with-status"
            create(custom, ns, kind, with_status, spec)
            patch_status(custom, ns, kind, with_status, {"status": _status(kind, spec)})
        yield ns, names
    finally:
        core.delete_namespace(ns)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("wide", [False, True], ids=["default", "wide"])
@pytest.mark.parametrize("spelling", ["short", "plural", "singular"])
def test_kubectl_get_lists_objects_under_the_crd_columns(
    kind: str,
    wide: bool,
    spelling: str,
    printed: tuple[str, dict[str, str]],
    kubectl: Kubectl,
    crds_installed: dict[str, Any],
) -> None:
    ns, _ = printed
    info = KINDS[kind]
    name = {"short": info.short_names[0], "plural": info.plural, "singular": kind.lower()}
    args = ["get", name[spelling], "-n", ns] + (["-o", "wide"] if wide else [])
    headers, rows = table(kubectl(*args))
    assert headers == expected_headers(crds_installed[kind], wide=wide)
    assert [r["NAME"] for r in rows] == [f"{kind.lower()}-plain", f"{kind.lower()}-with-status"]


def test_the_category_lists_every_kind(
    printed: tuple[str, dict[str, str]], kubectl: Kubectl
) -> None:
    ns, names = printed
    out = kubectl("get", CATEGORY, "-n", ns)
    for kind, name in names.items():
        assert f"{kind.lower()}.{GROUP}/{name}" in out
        assert f"{kind.lower()}.{GROUP}/{kind.lower()}-with-status" in out


@pytest.mark.parametrize("kind", list(KINDS))
def test_status_values_show_in_the_printer_columns(
    kind: str, printed: tuple[str, dict[str, str]], kubectl: Kubectl
) -> None:
    ns, _ = printed
    out = kubectl("get", SHORT_NAMES[kind], f"{kind.lower()}-with-status", "-n", ns, "-o", "wide")
    _, rows = table(out)
    assert len(rows) == 1
    shown = {k: v for k, v in rows[0].items() if k in SHOWN[kind]}
    assert shown == SHOWN[kind]
    plain = kubectl("get", SHORT_NAMES[kind], f"{kind.lower()}-plain", "-n", ns, "-o", "wide")
    from_spec = {"ENGINE", "GAMES"} if kind == "SelfplayJob" else set()
    empty = {c: table(plain)[1][0][c] for c in set(SHOWN[kind]) - from_spec}
    assert empty == dict.fromkeys(empty, "")


# --- 7. status is a subresource --------------------------------------------------------------


MUTABLE_SPEC = {
    "SelfplayJob": {"games": 77},
    "TrainingRun": {"minNewGames": 777},
    "SyncPlan": {"intervalSeconds": 77},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_status_is_ignored_on_create(kind: str, custom: Any, ns: str) -> None:
    name = unique(kind.lower())
    body = resource(kind, name, VALID_SPECS[kind])
    body["status"] = _status(kind, VALID_SPECS[kind])
    created = custom.create_namespaced_custom_object(GROUP, VERSION, ns, KINDS[kind].plural, body)
    assert "status" not in created
    assert "status" not in read(custom, ns, kind, name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_patch_of_the_resource_cannot_change_status(kind: str, custom: Any, ns: str) -> None:
    name = unique(kind.lower())
    create(custom, ns, kind, name, VALID_SPECS[kind])
    status = _status(kind, VALID_SPECS[kind])
    written = patch_status(custom, ns, kind, name, {"status": status})
    assert written["metadata"]["generation"] == 1  # status writes do not bump the generation
    changed_status = {"epoch": 99, "message": "written through the main resource"}
    patched = patch(custom, ns, kind, name, {"spec": MUTABLE_SPEC[kind], "status": changed_status})
    stored = read(custom, ns, kind, name)
    assert stored["status"] == written["status"] == patched["status"]
    assert stored["status"]["epoch"] == 3
    for key, value in MUTABLE_SPEC[kind].items():
        assert stored["spec"][key] == value
    assert stored["metadata"]["generation"] == 2


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_patch_of_status_cannot_change_spec(kind: str, custom: Any, ns: str) -> None:
    name = unique(kind.lower())
    created = create(custom, ns, kind, name, VALID_SPECS[kind])
    status = _status(kind, VALID_SPECS[kind])
    written = patch_status(custom, ns, kind, name, {"spec": MUTABLE_SPEC[kind], "status": status})
    stored = read(custom, ns, kind, name)
    assert stored["spec"] == created["spec"] == written["spec"]
    assert stored["metadata"]["generation"] == 1
    for key, value in status.items():
        assert stored["status"][key] == value, f"status.{key}"


STATUS_FIELD = {"SelfplayJob": "phase", "TrainingRun": "phase", "SyncPlan": "state"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_status_is_validated_through_the_subresource(kind: str, custom: Any, ns: str) -> None:
    name = unique(kind.lower())
    create(custom, ns, kind, name, VALID_SPECS[kind])
    field = STATUS_FIELD[kind]
    error = rejection(lambda: patch_status(custom, ns, kind, name, {"status": {field: "Bogus"}}))
    assert error.status == 422
    assert error.names(f"status.{field}"), error
    assert "supported values" in error.message
