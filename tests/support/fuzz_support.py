"""Hypothesis strategies for fuzzing the custom resources, derived from the CRDs' own schemas.

:func:`resources` draws whole resource bodies of one kind. Each field is, most of the time, a
value its schema allows (an enum member, an integer within its bounds, a string matching its
pattern and length, a list of allowed items, a map of allowed values), and sometimes a value the
schema forbids: the wrong JSON type, one past a bound, a string or list one over its maximum or
far beyond it, a duplicate in a set, an unknown field, an odd ``metadata.name``. Every deliberate
violation is recorded by its wire path, so a test can check that the API server's rejection
names it. Values that the schema allows can still combine into something its CEL rules refuse
(a network engine without GPUs, more shards than games, two target kinds): those are drawn too,
with no recorded path.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from ringrift_operator.api.common import API_VERSION

_names = itertools.count()

# Plain text, with a little of everything that is not ASCII.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-._/:"),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=24,
)
WRONG_TYPES: dict[str, list[Any]] = {
    "string": [7, 2.5, True, ["x"], {"x": "y"}],
    "integer": ["7", 2.5, True, [1], {"n": 1}],
    "boolean": ["yes", "true", 1, [True]],
    "object": ["x", 3, ["x"], True],
    "array": ["x", 3, {"x": "y"}, True],
}


@dataclass(frozen=True)
class Fuzzed:
    """One drawn resource and the paths of the violations put in it on purpose."""

    kind: str
    body: dict[str, Any]
    bad: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass
class _Draw:
    """The recorder a draw passes down: where the violations went."""

    bad: list[str] = field(default_factory=list)


def _chance(p_invalid: float) -> st.SearchStrategy[bool]:
    """True with probability about ``p_invalid`` (False is the simplest example, so a failing
    example shrinks towards fewer violations)."""
    return st.integers(0, 999).map(lambda n: n >= (1 - p_invalid) * 1000)


def _valid(schema: Mapping[str, Any], path: str, rec: _Draw, draw: Any, p: float) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    if kind == "integer":
        low = schema.get("minimum", -(2**31))
        high = schema.get("maximum", 2**31 - 1)
        edge = st.sampled_from([low, high])
        return draw(st.one_of(edge, st.integers(low, high)))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
        text = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else TEXT
        return draw(text.filter(lambda s: low <= len(s) <= high))
    if kind == "array":
        items = schema.get("items", {})
        low, high = schema.get("minItems", 0), min(schema.get("maxItems", 4), 4)
        unique = schema.get("x-kubernetes-list-type") == "set"
        values: list[Any] = []
        for _ in range(draw(st.integers(low, max(low, high)))):
            value = _value(items, path, rec, draw, p)
            if not (unique and value in values):
                values.append(value)
        fill = (v for v in (_fill(items, i) for i in itertools.count()) if v not in values)
        while len(values) < low:  # duplicates dropped below the minimum
            values.append(next(fill))
        return values
    if kind == "object":
        return _object(schema, path, rec, draw, p)
    return draw(TEXT)


def _object(schema: Mapping[str, Any], path: str, rec: _Draw, draw: Any, p: float) -> Any:
    props: Mapping[str, Any] = schema.get("properties", {})
    if props:
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if key in required and p > 0 and draw(_chance(p)):
                rec.bad.append(f"{path}.{key}")  # a required field left out
            elif key in required or draw(st.booleans()):
                out[key] = _value(sub, f"{path}.{key}", rec, draw, p)
        return out
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        low = schema.get("minProperties", 0)
        high = min(schema.get("maxProperties", 3), 3)
        keys = draw(
            st.lists(
                st.from_regex(r"[a-z0-9]([a-z0-9.\-/]{0,20}[a-z0-9])?", fullmatch=True),
                min_size=low,
                max_size=max(low, high),
                unique=True,
            )
        )
        return {k: _value(extra, f"{path}", rec, draw, p) for k in keys}
    return {}


def _invalid(schema: Mapping[str, Any], path: str, rec: _Draw, draw: Any) -> Any:
    """A value the schema itself forbids, recorded at ``path``."""
    kind = schema.get("type", "string")
    options: list[st.SearchStrategy[Any]] = [st.sampled_from(WRONG_TYPES[kind])]
    if "enum" in schema:
        options.append(TEXT.filter(lambda s: s not in schema["enum"]))
        options.append(st.sampled_from([str(e).upper() for e in schema["enum"]]))
    if kind == "integer":
        if "minimum" in schema:
            options.append(st.sampled_from([schema["minimum"] - 1, -(10**12)]))
        if "maximum" in schema:
            options.append(st.sampled_from([schema["maximum"] + 1, 10**12]))
    if kind == "string":
        if "maxLength" in schema:
            n = schema["maxLength"]
            options.append(st.sampled_from(["x" * (n + 1), "y" * max(64 << 10, n * 64)]))
        if schema.get("minLength", 0) > 0:
            options.append(st.just(""))
        if "pattern" in schema:
            options.append(st.sampled_from(["UPPER", "a b", "../etc", "x_y_z", "-lead"]))
    if kind == "array":
        item = schema.get("items", {})
        if "maxItems" in schema:
            n = schema["maxItems"]
            options.append(st.just([_fill(item, i) for i in range(n + 1)]))
            options.append(st.just([_fill(item, i) for i in range(1_000)]))
        if schema.get("minItems", 0) > 0:
            options.append(st.just([]))
        if schema.get("x-kubernetes-list-type") == "set":
            one = _fill(item, 0)
            options.append(st.just([one, one]))
    if kind == "object" and schema.get("properties") and draw(st.booleans()):
        known = set(schema["properties"])
        unknown = st.from_regex(r"[a-z][a-zA-Z]{2,12}", fullmatch=True).filter(
            lambda k: k not in known
        )
        base = _object(schema, path, _Draw(), draw, 0.0)
        key = draw(unknown)
        rec.bad.append(f"{path}.{key}")
        return {**base, key: draw(st.sampled_from(["x", 1, True, {"a": 1}]))}
    if kind == "object" and "maxProperties" in schema:
        n = schema["maxProperties"]
        options.append(st.just({f"k{i}": "v" for i in range(n + 1)}))
    rec.bad.append(path)
    return draw(st.one_of(options))


def _fill(schema: Mapping[str, Any], i: int) -> Any:
    """The i-th distinct valid item of a list, without a draw (for over-long lists)."""
    if "enum" in schema:
        return schema["enum"][i % len(schema["enum"])]
    if schema.get("type") == "integer":
        return schema.get("minimum", 0) + i
    pattern = schema.get("pattern", "")
    if "square8" in pattern:  # config keys: few distinct ones exist, repeats are fine for length
        return ["square8", "square19", "hex8", "hexagonal"][i % 4] + f"_{2 + (i // 4) % 3}p"
    return f"n{i}"


def _value(schema: Mapping[str, Any], path: str, rec: _Draw, draw: Any, p: float) -> Any:
    if p > 0 and draw(_chance(p)):
        return _invalid(schema, path, rec, draw)
    return _valid(schema, path, rec, draw, p)


ODD_NAMES = ["UPPER", "under_score", "-leading", "trailing-", "a" * 254, "dot..dot", "sp ace",
             "ünï", "a/b"]  # fmt: skip


@st.composite
def resources(draw: Any, crd: Mapping[str, Any], *, p_invalid: float = 0.04) -> Fuzzed:
    """A resource of the CRD's kind; each field is invalid with probability ``p_invalid``."""
    version = crd["spec"]["versions"][0]
    kind = crd["spec"]["names"]["kind"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rec = _Draw()
    spec = _object(schema, "spec", rec, draw, p_invalid)
    if draw(_chance(p_invalid)):
        name = draw(st.sampled_from(ODD_NAMES))
        rec.bad.append("metadata.name")
    else:
        name = f"fuzz-{kind.lower()}-{next(_names)}"
    body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return Fuzzed(kind=kind, body=body, bad=tuple(rec.bad))
