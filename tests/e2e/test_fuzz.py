"""Property-based fuzzing of the three kinds through the real API server, with the operator on.

Hypothesis draws resources from the CRDs' own schemas (``fuzz_support.resources``): mostly
valid fields, some deliberately wrong (types, bounds, lengths, list sizes, duplicates, unknown
fields, missing required fields, odd names), and valid fields that break a CEL rule together.
Each goes to the API server as a server-side dry run (``dryRun=All``, ``fieldValidation=Strict``,
what kubectl sends). The properties:

- a rejection is a 400/422 whose message names one of the fields broken on purpose (or, for a
  cross-field rule, a ``spec`` field); never a 5xx;
- nothing broken on purpose is accepted;
- what is accepted, as the API server stored it (defaults filled in), parses into the operator's
  models: the operator can act on everything the API server lets in.

Then accepted ones (``$RINGRIFT_FUZZ_REAL`` per kind, default 12) are created for real while the
operator runs: every one gets a status (``observedGeneration`` of its generation, conditions
present) within a deadline, and the operator is still alive with no traceback in its log. These
are drawn the same way from a schema narrowed to the two board configs no other e2e module uses
(square19_4p, hexagonal_4p), so that the games they play and the files they sync cannot change
what another module counts. ``$RINGRIFT_FUZZ_EXAMPLES`` (default 1000, over the three kinds) sets
how many are drawn; ``make chaos-input`` runs 5000.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.rest import ApiException

from crds_support import KINDS, ApiError
from fuzz_support import Fuzzed, resources
from operator_support import GROUP, VERSION, OperatorProcess, delete_namespace_and_wait
from ringrift_operator.api.meta import InvalidResourceError, parse_resource
from tests_support import poll

EXAMPLES = int(os.environ.get("RINGRIFT_FUZZ_EXAMPLES", "1000"))
REAL_PER_KIND = int(os.environ.get("RINGRIFT_FUZZ_REAL", "12"))
STATUS_DEADLINE_S = 60.0
UNUSED_CONFIGS = ("square19_4p", "hexagonal_4p")  # by no other e2e module
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
              HealthCheck.large_base_example]  # fmt: skip


@pytest.fixture(scope="module")
def custom(api_client: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture(scope="module")
def fuzz_ns(core: Any) -> Iterator[str]:
    """One namespace for the three kinds (one teardown), deleted with everything in it."""
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        delete_namespace_and_wait(core, name, timeout=120)


def names(error: ApiError, path: str) -> bool:
    """Whether the error names ``path`` (list indices ignored: ``a.b[2].c`` names ``a.b.c``)."""
    parts = [error.message, *(f"{c.get('field', '')} {c.get('message', '')}" for c in error.causes)]
    return path in re.sub(r"\[\d+\]", "", " ".join(parts))


def describe(f: Fuzzed) -> str:
    text = json.dumps(f.body)
    return f"{f.kind} (broken on purpose: {list(f.bad)}): {text[:1500]}"


def check_verdict(custom: Any, ns: str, f: Fuzzed) -> dict[str, Any] | ApiError:
    """Send ``f`` as a dry run; the stored object if accepted, the error if rejected."""
    try:
        stored: dict[str, Any] = custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, KINDS[f.kind].plural, f.body, dry_run="All",
            field_validation="Strict",
        )  # fmt: skip
    except ApiException as e:
        error = ApiError.of(e)
        assert error.status in (400, 422), f"{error} for {describe(f)}"
        if f.bad:
            assert any(names(error, p) for p in f.bad), f"{error} names none of {f.bad}"
        else:
            assert "spec" in error.message, f"{error} for {describe(f)}"
        return error
    assert not f.bad, f"accepted although broken at {list(f.bad)}: {describe(f)}"
    try:
        parse_resource(KINDS[f.kind].resource, stored, kind=f.kind)
    except InvalidResourceError as e:
        raise AssertionError(f"the API server accepted what the models refuse: {e}") from None
    return stored


def narrowed(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD with its config fields narrowed to ``UNUSED_CONFIGS`` (players required)."""
    crd = copy.deepcopy(crd)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    if "board" in props:
        props["board"]["enum"] = sorted({c.split("_")[0] for c in UNUSED_CONFIGS})
        props["players"].update(minimum=4, maximum=4)
        spec["required"] = sorted({*spec.get("required", ()), "board", "players"})
    if "configs" in props:
        props["configs"]["items"]["pattern"] = f"^({'|'.join(UNUSED_CONFIGS)})$"
    return crd


def has_status(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"]["generation"] and bool(
        status.get("conditions")
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_fuzzed_resources_through_the_api_server_and_the_operator(
    kind: str,
    crds_installed: dict[str, Any],
    custom: Any,
    operator: OperatorProcess,
    fuzz_ns: str,
) -> None:
    namespace = fuzz_ns
    crd = crds_installed[kind]
    counts: Counter[str] = Counter()
    sample: list[dict[str, Any]] = []
    seen: set[str] = set()

    @settings(max_examples=math.ceil(EXAMPLES / len(KINDS)), deadline=None, database=None,
              suppress_health_check=SUPPRESSED)  # fmt: skip
    @given(resources(crd))
    def fuzz(f: Fuzzed) -> None:
        verdict = check_verdict(custom, namespace, f)
        counts["accepted" if isinstance(verdict, dict) else f"rejected {verdict.status}"] += 1

    started = time.monotonic()
    fuzz()
    fuzz_s = time.monotonic() - started
    total = sum(counts.values())
    print(f"\n{kind}: {total} drawn in {fuzz_s:.1f}s: {dict(counts)}")
    assert counts["accepted"] >= total // 10, counts  # the fuzzing reaches the operator's side
    assert total - counts["accepted"] >= total // 10, counts  # and the API server's checks

    @settings(max_examples=10 * REAL_PER_KIND, deadline=None, database=None,
              suppress_health_check=SUPPRESSED)  # fmt: skip
    @given(resources(narrowed(crd), p_invalid=0.0))
    def draw_sample(f: Fuzzed) -> None:
        if len(sample) >= REAL_PER_KIND:
            return
        verdict = check_verdict(custom, namespace, f)
        key = json.dumps(f.body["spec"], sort_keys=True)
        if isinstance(verdict, dict) and key not in seen:
            seen.add(key)
            sample.append(f.body)

    draw_sample()
    assert len(sample) == REAL_PER_KIND, len(sample)

    # The accepted sample, for real, with the operator running.
    log_start = len(operator.log())
    started = time.monotonic()
    for body in sample:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, KINDS[kind].plural, body, field_validation="Strict"
        )
    plural = KINDS[kind].plural

    def without_status() -> list[str]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        assert len(items) == len(sample)
        return [o["metadata"]["name"] for o in items if not has_status(o)]

    poll(without_status, until=lambda left: not left, timeout=STATUS_DEADLINE_S,
         what=f"a status on each of {len(sample)} accepted {plural}")  # fmt: skip
    print(f"{kind}: {len(sample)} created, all with status in {time.monotonic() - started:.1f}s")
    assert operator.alive(), operator.log()[-3000:]
    log = operator.log()[log_start:]
    assert "Traceback" not in log, log[-3000:]


def test_a_spec_the_schema_admits_but_the_pod_api_refuses_gets_a_status(
    crds_installed: dict[str, Any], custom: Any, operator: OperatorProcess, fuzz_ns: str
) -> None:
    """Found by the fuzzing above: the CRD lets any toleration key through, the Pod API wants
    a qualified name. The job must say so in its status, not retry a failing create forever."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfplayJob",
        "metadata": {"name": "refused-pod"},
        "spec": {"board": "hexagonal", "players": 4, "engineMode": "heuristic", "games": 3,
                 "gpus": 0, "placement": {"tolerations": [{"key": "æ", "operator": "Exists"}]}},
    }  # fmt: skip
    log_start = len(operator.log())
    custom.create_namespaced_custom_object(GROUP, VERSION, fuzz_ns, "selfplayjobs", body)
    obj = poll(
        lambda: custom.get_namespaced_custom_object(GROUP, VERSION, fuzz_ns, "selfplayjobs",
                                                    "refused-pod"),
        until=lambda o: has_status(o) and o["status"].get("reason") == "PodRejected",
        timeout=STATUS_DEADLINE_S,
        what="the refused pod reported in the job's status",
    )  # fmt: skip
    assert obj["status"]["phase"] == "Pending"
    assert "spec.tolerations[0].key" in obj["status"]["message"]
    scheduled = next(c for c in obj["status"]["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "PodRejected")
    assert operator.alive()
    assert "Traceback" not in operator.log()[log_start:]
