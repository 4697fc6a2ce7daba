"""Pieces every resource model shares: the wire-model base, object metadata, owner references,
placement, bounded string types, RFC 3339 times and the parse error.

Imported by the per-kind modules (``selfplayjob``, ``trainingrun``, ``syncplan``), by ``crdgen``
and by reconcilers that build owned objects. Pure: pydantic and the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from ringrift_operator.api.common import API_VERSION, Board

# Bounds shared by the models; the CRDs carry them so the API server rejects oversize input.
MAX_NAME_LENGTH = 253  # a DNS subdomain: names of objects, nodes and pods
# Our resources' names become label values (ringrift.ai/owner-name) on the pods they own.
MAX_RESOURCE_NAME_LENGTH = 63
MAX_LABEL_KEY_LENGTH = 317  # optional 253-character prefix, "/", 63-character name
MAX_LABEL_VALUE_LENGTH = 63
MAX_LABELS = 32
MAX_URI_LENGTH = 1024
MAX_MESSAGE_LENGTH = 1024  # short human messages in status (conditions allow more)
MAX_REASON_LENGTH = 128
MAX_TOLERATIONS = 16
MAX_TIME_LENGTH = 64

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"  # CamelCase, as in metav1.Condition
CONFIG_KEY_PATTERN = "^(" + "|".join(b.value for b in Board) + ")_[2-4]p$"


def _check_rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from None
    if "T" not in value or parsed.tzinfo is None:
        raise ValueError(f"not an RFC 3339 time with a time zone: {value!r}")
    return value


Rfc3339 = Annotated[
    str,
    AfterValidator(_check_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": MAX_TIME_LENGTH}),
]
"""An RFC 3339 timestamp as the API server writes it, e.g. ``2026-01-02T03:04:05Z``."""

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
"""The name of a Kubernetes object (a node, a pod): a lowercase DNS subdomain."""

Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_LENGTH, pattern=REASON_PATTERN)]
"""A machine-readable CamelCase reason, e.g. ``DispatchTimeout``."""

Message = Annotated[str, Field(max_length=MAX_MESSAGE_LENGTH)]
"""A short human-readable message."""

ConfigKey = Annotated[str, Field(max_length=32, pattern=CONFIG_KEY_PATTERN)]
"""A board config key, e.g. ``square8_2p``."""

LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_LENGTH)]
LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_KEY_LENGTH)]

RESOURCE_NAME_MESSAGE = (
    f"metadata.name must be at most {MAX_RESOURCE_NAME_LENGTH} characters (it becomes a label "
    "value on the pods the resource owns)"
)
RESOURCE_NAME_RULE: JsonDict = {
    "rule": f"size(self.metadata.name) <= {MAX_RESOURCE_NAME_LENGTH}",
    "message": RESOURCE_NAME_MESSAGE,
}
# A CEL rule for label maps: the schema bounds values and the count, this bounds the keys.
LABEL_KEYS_RULE: JsonDict = {
    "rule": f"self.all(k, size(k) <= {MAX_LABEL_KEY_LENGTH})",
    "message": f"label keys must be at most {MAX_LABEL_KEY_LENGTH} characters",
}


def immutable(field: str) -> JsonDict:
    """Schema extra for a field that may not change once the object exists (a CEL transition
    rule; the API server checks it on update)."""
    rule: JsonDict = {"rule": "self == oldSelf", "message": f"{field} is immutable"}
    return {"x-kubernetes-validations": [rule]}


def rfc3339(now: datetime | str) -> str:
    """Format a time as the API server does (UTC, whole seconds, ``Z``); strings pass through
    after validation. Naive datetimes are rejected: the caller owns the clock and its zone."""
    if isinstance(now, str):
        return _check_rfc3339(now)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 time into an aware datetime."""
    return datetime.fromisoformat(_check_rfc3339(value))


class WireModel(BaseModel):
    """Base of every spec/status model: Python names in snake_case, wire names in camelCase.

    Unknown keys are rejected so that a typo in a manifest is an error, not a silent default
    (the API server prunes unknown fields before we see them, so this bites only in tests and
    examples). Status models and the resource wrappers ignore unknown keys instead, so that an
    operator one version behind can still read what a newer one wrote."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


def to_wire(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready wire form of a model (camelCase, enums as strings, unset optionals left
    out): what a reconciler puts in a status patch."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class GpuClass(StrEnum):
    """GPU classes, most powerful first. ``any`` accepts every GPU (and, for CPU jobs, no GPU)."""

    H100 = "h100"
    GH200 = "gh200"
    A100 = "a100"
    L40S = "l40s"
    RTX4090 = "rtx4090"
    RTX3090 = "rtx3090"
    ANY = "any"


GPU_CLASSES_BY_POWER: tuple[GpuClass, ...] = tuple(g for g in GpuClass if g is not GpuClass.ANY)
"""The named GPU classes, most powerful first; a node meets ``minGpuClass`` when its class comes
at or before it in this order."""


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EQUAL = "Equal"
    EXISTS = "Exists"


class TaintEffectName(StrEnum):
    """The taint effects a toleration can name."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(WireModel):
    """Lets the job's pods run on nodes with a matching taint (as a Pod toleration does)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "message": "value must be empty when operator is Exists",
                    "fieldPath": ".value",
                },
                {
                    "rule": "(has(self.key) && self.key != '') || self.operator == 'Exists'",
                    "message": "an empty key requires operator Exists (tolerate every taint)",
                    "fieldPath": ".operator",
                },
            ]
        }
    )

    key: str = Field(
        default="",
        max_length=MAX_LABEL_KEY_LENGTH,
        description="Taint key to tolerate. Empty with operator Exists tolerates every taint.",
    )
    operator: TolerationOperator = Field(
        default=TolerationOperator.EQUAL,
        description="Equal: the taint's value must equal `value`. Exists: any value matches.",
    )
    value: str = Field(
        default="",
        max_length=MAX_LABEL_VALUE_LENGTH,
        description="Taint value to match with operator Equal; empty with operator Exists.",
    )
    effect: TaintEffectName | None = Field(
        default=None,
        description="Taint effect to tolerate (NoSchedule, PreferNoSchedule, NoExecute). "
        "Unset tolerates every effect.",
    )

    @model_validator(mode="after")
    def _check_operator(self) -> Toleration:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if not self.key and self.operator is not TolerationOperator.EXISTS:
            raise ValueError("an empty key requires operator Exists (tolerate every taint)")
        return self


class Placement(WireModel):
    """Where the operator may place the job's pods. The operator ranks the nodes that pass these
    filters by power and picks the best one itself (it is the scheduler of its own pods)."""

    min_gpu_class: GpuClass = Field(
        default=GpuClass.ANY,
        description="Weakest GPU class acceptable: h100 > gh200 > a100 > l40s > rtx4090 > "
        "rtx3090. `any` (the default) accepts every node with free GPUs. Ignored for CPU jobs.",
    )
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="Node labels that must all match (as a Pod's nodeSelector). "
        f"At most {MAX_LABELS} entries.",
        json_schema_extra={"x-kubernetes-validations": [LABEL_KEYS_RULE]},
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Taints the job's pods tolerate; nodes with other NoSchedule/NoExecute "
        f"taints are skipped. At most {MAX_TOLERATIONS}.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class OwnerReference(WireModel):
    """A reference from an owned object (a Pod) to the resource that owns it."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(max_length=MAX_NAME_LENGTH, description="Owner's apiVersion.")
    kind: str = Field(max_length=63, description="Owner's kind.")
    name: str = Field(max_length=MAX_NAME_LENGTH, description="Owner's name.")
    uid: str = Field(max_length=64, description="Owner's UID.")
    controller: bool | None = Field(default=None, description="Whether the owner manages it.")
    block_owner_deletion: bool | None = Field(
        default=None, description="Whether foreground deletion of the owner waits for it."
    )


class ObjectMeta(WireModel):
    """The parts of metadata the operator reads; everything else is kept as extra keys."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(default="", max_length=MAX_NAME_LENGTH, description="Object name.")
    namespace: str = Field(default="", max_length=63, description="Object namespace.")
    uid: str = Field(default="", max_length=64, description="Object UID.")
    generation: int = Field(default=0, ge=0, description="Spec generation.")
    resource_version: str = Field(default="", description="Resource version.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    owner_references: list[OwnerReference] = Field(
        default_factory=list, description="Owners of the object."
    )
    creation_timestamp: str | None = Field(default=None, description="Creation time.")
    deletion_timestamp: str | None = Field(default=None, description="Deletion time, if deleting.")


class ResourceBase(WireModel):
    """What every resource wrapper has besides spec and status: apiVersion, kind, metadata."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(default=API_VERSION, description="Always ringrift.ai/v1alpha1.")
    kind: str = Field(description="The resource kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")

    @model_validator(mode="after")
    def _check_name(self) -> ResourceBase:
        if len(self.metadata.name) > MAX_RESOURCE_NAME_LENGTH:
            raise ValueError(RESOURCE_NAME_MESSAGE)
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def uid(self) -> str:
        return self.metadata.uid

    @property
    def generation(self) -> int:
        return self.metadata.generation

    @property
    def owner_references(self) -> list[OwnerReference]:
        return self.metadata.owner_references

    def owner_reference(self) -> OwnerReference:
        """The controller reference an object owned by this resource carries, so that garbage
        collection removes it with the resource."""
        return OwnerReference(
            api_version=self.api_version,
            kind=self.kind,
            name=self.name,
            uid=self.uid,
            controller=True,
            block_owner_deletion=True,
        )


class FieldError(BaseModel):
    """One problem in a resource body: where (wire path, e.g. ``spec.players``) and what."""

    model_config = ConfigDict(frozen=True)

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidResourceError(ValueError):
    """A resource body the models reject. ``str()`` lists every problem with its field path,
    ready for an Event; :meth:`summary` is bounded for a status message."""

    def __init__(self, *, kind: str, name: str, errors: Sequence[FieldError]) -> None:
        self.kind = kind
        self.name = name
        self.errors = list(errors)
        details = "; ".join(str(e) for e in self.errors)
        super().__init__(f"invalid {kind} {name or '<unnamed>'}: {details}")

    def summary(self, *, max_length: int = MAX_MESSAGE_LENGTH) -> str:
        """The message cut to ``max_length`` characters (for ``status.message``)."""
        text = str(self)
        return text if len(text) <= max_length else text[: max_length - 1] + "…"


def format_path(loc: Sequence[int | str]) -> str:
    """``("spec", "tolerations", 0, "key")`` → ``spec.tolerations[0].key``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _plain(value: Any) -> Any:
    # kopf hands over Mapping views; pydantic wants plain dicts and lists.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


ResourceT = TypeVar("ResourceT", bound=ResourceBase)


def parse_resource(model: type[ResourceT], body: Mapping[str, Any], *, kind: str) -> ResourceT:
    """Validate a resource body into ``model``; raise :class:`InvalidResourceError` naming every
    bad field by its wire path."""
    plain = _plain(body)
    meta = plain.get("metadata") if isinstance(plain, dict) else None
    name = str(meta.get("name", "")) if isinstance(meta, dict) else ""
    if isinstance(plain, dict) and plain.get("kind", kind) != kind:
        raise InvalidResourceError(
            kind=kind,
            name=name,
            errors=[FieldError(path="kind", message=f"expected {kind}, got {plain['kind']!r}")],
        )
    try:
        # Strict JSON validation: "2" is not an integer and "yes" not a boolean, as on the API
        # server; enums and timestamps still parse from their JSON strings.
        return model.model_validate_json(json.dumps(plain), strict=True)
    except ValidationError as exc:
        errors = [
            FieldError(path=format_path(e["loc"]), message=e["msg"].removeprefix("Value error, "))
            for e in exc.errors(include_url=False)
        ]
        raise InvalidResourceError(kind=kind, name=name, errors=errors) from None
