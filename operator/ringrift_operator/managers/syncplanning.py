"""Sync planning: which files each target node lacks, and which peer should send them.

The seed's SyncPlanner as pure logic. The SyncPlan reconciler collects one :class:`Manifest` per
node agent, calls :func:`plan_sync` for the nodes to supply and hands each :class:`Transfer` to the
target's agent as one pull. :func:`transition` is the sync workflow's state machine
(``status.state``) and :func:`retry_delay` its backoff.

How a plan is decided:

- **Versions.** A file is its relative path (``games/<config>/<file>``); a version of it is its
  sha256. Copies with the same sha256 are the same version whatever their mtimes.
- **The wanted version** of a path is the newest across every fresh manifest: the greatest mtime,
  equal mtimes broken by the greater sha256 so that the choice never depends on manifest order.
  Agents keep the source's mtime when they pull, so a copy never looks newer than its original.
- **A target needs a path** when it lacks it, or holds another version whose mtime is older than
  the wanted mtime by more than the tolerance (default 60 s). A copy within the tolerance counts as
  current: with clocks that may be skewed by that much we cannot tell which is newer, and sending
  it anyway would let two nodes overwrite each other forever. A same-hash copy is never re-sent.
- **Sources** are the other nodes holding exactly the wanted version. Healthy peers are preferred;
  a peer marked unhealthy serves only files no healthy peer holds; an unreachable peer serves
  nothing. Among equals, the source with the fewest bytes assigned so far (plus ``source_load``)
  is chosen, which spreads the plan's bytes across peers.
- **Manifests older than the maximum age** (default 300 s) are ignored altogether: a stale target
  is skipped, a stale peer neither sends nor defines what is newest.

The work is linear in the number of manifest entries: dict passes, and per needed file a choice
among the few peers that hold it — made in C loops (``filterfalse``, ``groupby``, ``map``) for the
runs of files a single peer can send, the usual shape of a cold start. Nothing sorts the files
(only the few unavailable paths, for a stable status). ``bench/micro_syncplan.py`` measures it
over a million entries.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import filterfalse, groupby
from operator import attrgetter
from types import MappingProxyType

from ringrift_operator.api.contract import GAMES_SUBDIR

DEFAULT_MAX_FILES_PER_JOB = 50
DEFAULT_MTIME_TOLERANCE_SECONDS = 60.0
DEFAULT_MANIFEST_MAX_AGE_SECONDS = 300.0
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


# --- manifests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file in a node's data directory, as its agent reported it."""

    path: str  # relative to the data directory, "/"-separated: "games/square8_2p/abc.jsonl"
    size: int  # bytes
    mtime: float  # seconds since the epoch, as the node's clock saw it
    sha256: str  # hex digest; the identity of this version of the file


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything one node holds, collected at one moment (by the operator's clock)."""

    node: str
    files: Mapping[str, FileEntry]  # path -> entry
    collected_at: float  # seconds since the epoch

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())


def build_manifest(node: str, entries: Iterable[FileEntry], *, collected_at: float) -> Manifest:
    """A manifest from the agents' wire format (a list); a repeated path keeps the last entry."""
    return Manifest(node=node, files={e.path: e for e in entries}, collected_at=collected_at)


def manifest_age(manifest: Manifest, *, now: float) -> float:
    """Seconds since the manifest was collected (never negative)."""
    return max(0.0, now - manifest.collected_at)


def is_manifest_fresh(
    manifest: Manifest, *, now: float, max_age: float = DEFAULT_MANIFEST_MAX_AGE_SECONDS
) -> bool:
    """True while the manifest is at most ``max_age`` seconds old."""
    return manifest_age(manifest, now=now) <= max_age


def config_prefix(config: str) -> str:
    """The path prefix of one board config's games: ``games/<config>/``."""
    return f"{GAMES_SUBDIR}/{config}/"


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The SyncPlan spec's tuning knobs, with the seed's defaults."""

    max_files_per_job: int = DEFAULT_MAX_FILES_PER_JOB
    mtime_tolerance_seconds: float = DEFAULT_MTIME_TOLERANCE_SECONDS
    manifest_max_age_seconds: float = DEFAULT_MANIFEST_MAX_AGE_SECONDS

    def __post_init__(self) -> None:
        if self.max_files_per_job < 1:
            raise ValueError(f"max_files_per_job must be at least 1, got {self.max_files_per_job}")
        if self.mtime_tolerance_seconds < 0:
            raise ValueError(
                f"mtime_tolerance_seconds must not be negative, got {self.mtime_tolerance_seconds}"
            )
        if self.manifest_max_age_seconds <= 0:
            raise ValueError(
                f"manifest_max_age_seconds must be positive, got {self.manifest_max_age_seconds}"
            )


DEFAULT_SYNC_SETTINGS = SyncSettings()


class SkipReason(StrEnum):
    """Why a requested target got no transfers at all."""

    NO_MANIFEST = "NoManifest"
    STALE_MANIFEST = "StaleManifest"
    UNREACHABLE = "Unreachable"


@dataclass(frozen=True, slots=True)
class Transfer:
    """One pull: ``target`` fetches ``files`` (at most ``max_files_per_job``) from ``source``."""

    target: str
    source: str
    files: tuple[FileEntry, ...]  # the wanted versions: the agent checks each sha256
    total_bytes: int

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(entry.path for entry in self.files)


def _no_missing() -> Mapping[str, int]:
    return MappingProxyType({})


def _no_skips() -> Mapping[str, SkipReason]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The decision of one planning round; applying it is the reconciler's job."""

    transfers: tuple[Transfer, ...] = ()
    # target -> files it needs (lacks or holds in an older version), supplied or not
    missing: Mapping[str, int] = field(default_factory=_no_missing)
    total_bytes: int = 0
    # paths some target needs whose wanted version no reachable peer holds, sorted
    unavailable: tuple[str, ...] = ()
    skipped_targets: Mapping[str, SkipReason] = field(default_factory=_no_skips)
    stale_nodes: tuple[str, ...] = ()  # manifests ignored for being too old

    @property
    def total_files(self) -> int:
        return sum(len(t.files) for t in self.transfers)

    @property
    def is_empty(self) -> bool:
        return not self.transfers


def plan_sync(
    manifests: Iterable[Manifest],
    *,
    targets: Iterable[str],
    now: float,
    settings: SyncSettings = DEFAULT_SYNC_SETTINGS,
    configs: Collection[str] | None = None,
    unhealthy: Collection[str] = frozenset(),
    unreachable: Collection[str] = frozenset(),
    source_load: Mapping[str, int] | None = None,
) -> SyncPlan:
    """Plan the transfers that bring every target up to the newest version of every file.

    ``configs`` limits the plan to the games of those board configs (``None``: every file in the
    manifests). ``unhealthy`` peers serve only what nobody else holds; ``unreachable`` peers serve
    nothing and are skipped as targets (their manifests still say what is newest). ``source_load``
    is bytes already queued on a peer, the starting point of the balancing. Transfers come grouped
    by target (in ``targets`` order), then by source. Raises ``ValueError`` for two manifests of
    one node.
    """
    unhealthy_set = frozenset(unhealthy)
    unreachable_set = frozenset(unreachable)
    fresh: dict[str, Manifest] = {}
    stale: list[str] = []
    seen: set[str] = set()
    for manifest in manifests:
        if manifest.node in seen:
            raise ValueError(f"two manifests for node {manifest.node!r}")
        seen.add(manifest.node)
        if is_manifest_fresh(manifest, now=now, max_age=settings.manifest_max_age_seconds):
            fresh[manifest.node] = manifest
        else:
            stale.append(manifest.node)

    prefixes = None if configs is None else tuple(config_prefix(c) for c in configs)
    versions = _wanted_versions(
        list(fresh.values()), prefixes=prefixes, unreachable=unreachable_set
    )
    candidates = _candidate_sources(versions.nodes, unhealthy=unhealthy_set)
    choices: dict[int, list[str]] = {}

    assigned: dict[str, int] = {node: 0 for node in fresh if node not in unreachable_set}
    for node, load in (source_load or {}).items():
        if node in assigned:
            assigned[node] = load
    skipped: dict[str, SkipReason] = {}
    missing: dict[str, int] = {}
    unavailable: set[str] = set()
    transfers: list[Transfer] = []
    tolerance = settings.mtime_tolerance_seconds
    for target in dict.fromkeys(targets):  # de-duplicated, order kept
        if target in unreachable_set:
            skipped[target] = SkipReason.UNREACHABLE
        elif target in fresh:
            by_source, missing[target] = _assign(
                fresh[target].files,
                versions=versions,
                tolerance=tolerance,
                candidates=candidates,
                choices=choices,
                assigned=assigned,
                unavailable=unavailable,
            )
            transfers.extend(_chunk(target, by_source, max_files=settings.max_files_per_job))
        elif target in seen:
            skipped[target] = SkipReason.STALE_MANIFEST
        else:
            skipped[target] = SkipReason.NO_MANIFEST

    return SyncPlan(
        transfers=tuple(transfers),
        missing=MappingProxyType(missing),
        total_bytes=sum(t.total_bytes for t in transfers),
        unavailable=tuple(sorted(unavailable)),
        skipped_targets=MappingProxyType(skipped),
        stale_nodes=tuple(stale),
    )


def is_current(have: FileEntry | None, want: FileEntry, *, tolerance: float) -> bool:
    """Whether a held copy (``None``: absent) counts as the wanted version; see the module doc."""
    if have is None:
        return False
    return have.sha256 == want.sha256 or have.mtime >= want.mtime - tolerance


@dataclass(frozen=True, slots=True)
class _Versions:
    """The wanted version of every path and the serving nodes that hold it.

    Holders are a bit set (bit i: ``nodes[i]``): an int is cheap to update and is not tracked by
    the garbage collector, which matters over a million paths.
    """

    newest: dict[str, FileEntry]  # path -> greatest entry by (mtime, sha256)
    holders: dict[str, int]  # path -> serving nodes holding the wanted version
    nodes: tuple[str, ...]  # bit i of a holder set -> node name


def _wanted_versions(
    manifests: Collection[Manifest],
    *,
    prefixes: tuple[str, ...] | None,
    unreachable: frozenset[str],
) -> _Versions:
    """One pass over every entry; a manifest sharing no path with earlier ones is merged whole.

    That merge is a pair of dict updates (C loops that keep insertion order), the usual shape of a
    cold start where each node holds the games it produced. A version that stops being the wanted
    one is set aside with its holders, and the rare paths with several versions are reconciled at
    the end, so the wanted versions and holder sets do not depend on the order of the manifests.
    """
    nodes = tuple(m.node for m in manifests)
    newest: dict[str, FileEntry] = {}
    holders: dict[str, int] = {}
    set_aside: dict[str, list[tuple[str, int]]] = {}
    for index, manifest in enumerate(manifests):
        bit = 0 if manifest.node in unreachable else 1 << index
        files: Mapping[str, FileEntry] = manifest.files
        if prefixes is not None:
            files = {p: e for p, e in files.items() if p.startswith(prefixes)}
        if files.keys().isdisjoint(newest.keys()):  # a node's own output: merge in C loops
            newest.update(files)
            holders.update(dict.fromkeys(files, bit))
            continue
        get = newest.get
        for path, entry in files.items():
            best = get(path)
            if best is None:
                newest[path] = entry
                holders[path] = bit
            elif entry.sha256 == best.sha256:
                holders[path] |= bit
                if entry.mtime > best.mtime:
                    newest[path] = entry
            elif entry.mtime > best.mtime or (
                entry.mtime == best.mtime and entry.sha256 > best.sha256
            ):
                set_aside.setdefault(path, []).append((best.sha256, holders[path]))
                newest[path] = entry
                holders[path] = bit
            else:
                set_aside.setdefault(path, []).append((entry.sha256, bit))
    for path, versions in set_aside.items():
        wanted = newest[path].sha256
        for sha, bits in versions:
            if sha == wanted:
                holders[path] |= bits
    return _Versions(newest=newest, holders=holders, nodes=nodes)


def _needed(
    held: Mapping[str, FileEntry], *, newest: Mapping[str, FileEntry], tolerance: float
) -> list[str]:
    """The paths a target lacks or holds in an outdated version (:func:`is_current` false), in
    ``newest``'s order. Only the target's own entries are compared in Python; the scan over
    every wanted path is a C iterator."""
    get = newest.get
    outdated = [
        path
        for path, have in held.items()
        if (want := get(path)) is not None
        and want is not have
        and have.sha256 != want.sha256
        and have.mtime < want.mtime - tolerance
    ]
    current: Collection[str] = held.keys() - outdated if outdated else held
    return list(filterfalse(current.__contains__, newest))


def _assign(
    held: Mapping[str, FileEntry],
    *,
    versions: _Versions,
    tolerance: float,
    candidates: Callable[[int], list[str]],
    choices: dict[int, list[str]],
    assigned: dict[str, int],
    unavailable: set[str],
) -> tuple[dict[str, list[FileEntry]], int]:
    """One target's needed files grouped by chosen source, and how many it needs.

    The hot loop of the planner. The needed paths come in runs of one holder set (a node's own
    output sits together in ``newest``); ``groupby`` finds the runs in C, and a run with a single
    candidate source (the usual case) is assigned whole, with C loops. Only files several peers
    could send are chosen one by one (the least loaded source). The candidates of each holder
    set are worked out once (``choices`` memoises ``candidates``). Updates ``choices``,
    ``assigned`` and ``unavailable``.
    """
    newest = versions.newest
    needed = _needed(held, newest=newest, tolerance=tolerance)
    by_source: dict[str, list[FileEntry]] = {}
    known = choices.get
    pick = newest.__getitem__
    for mask, run in groupby(needed, key=versions.holders.__getitem__):
        if not mask:
            unavailable.update(run)
            continue
        nodes = known(mask)
        if nodes is None:
            nodes = choices[mask] = candidates(mask)
        if len(nodes) == 1:
            source = nodes[0]
            wanted = list(map(pick, run))
            assigned[source] += sum(map(_SIZE, wanted))
            files = by_source.get(source)
            if files is None:
                by_source[source] = wanted
            else:
                files.extend(wanted)
            continue
        load = assigned.__getitem__
        for path in run:
            want = pick(path)
            source = min(nodes, key=load)
            assigned[source] += want.size
            files = by_source.get(source)
            if files is None:
                by_source[source] = [want]
            else:
                files.append(want)
    return by_source, len(needed)


def _candidate_sources(
    nodes: tuple[str, ...], *, unhealthy: frozenset[str]
) -> Callable[[int], list[str]]:
    """Holder set -> the nodes to choose among: its healthy ones, else all of them."""

    def candidates(mask: int) -> list[str]:
        every = []
        while mask:  # one step per holder, however many nodes there are
            lowest = mask & -mask
            every.append(nodes[lowest.bit_length() - 1])
            mask ^= lowest
        return [n for n in every if n not in unhealthy] or every

    return candidates


_SIZE = attrgetter("size")


def _chunk(
    target: str, by_source: Mapping[str, list[FileEntry]], *, max_files: int
) -> Iterable[Transfer]:
    size = _SIZE
    for source, files in by_source.items():
        for start in range(0, len(files), max_files):
            chunk = tuple(files[start : start + max_files])
            yield Transfer(
                target=target, source=source, files=chunk, total_bytes=sum(map(size, chunk))
            )


# --- the sync workflow -------------------------------------------------------------------------


class SyncState(StrEnum):
    """``SyncPlan.status.state``."""

    IDLE = "Idle"
    COLLECTING = "Collecting"
    SYNCING = "Syncing"
    SYNCED = "Synced"
    RETRY = "Retry"


class SyncEvent(StrEnum):
    """What moves the workflow."""

    COLLECT = "collect"  # time to (re)collect manifests
    MANIFESTS_READY = "manifests_ready"  # manifests in hand, plan made, transfers handed out
    COMPLETE = "complete"  # every transfer finished (an empty plan completes at once)
    ERROR = "error"  # collection or a transfer failed; retry after retry_delay(attempt)
    RETRY_DUE = "retry_due"  # the retry delay has passed: collect again
    CACHE_EXPIRED = "cache_expired"  # the synced manifests aged out: start over
    RESET = "reset"  # the spec changed: drop whatever was under way


_TRANSITIONS: Mapping[tuple[SyncState, SyncEvent], SyncState] = MappingProxyType(
    {
        (SyncState.IDLE, SyncEvent.COLLECT): SyncState.COLLECTING,
        (SyncState.COLLECTING, SyncEvent.MANIFESTS_READY): SyncState.SYNCING,
        (SyncState.COLLECTING, SyncEvent.ERROR): SyncState.RETRY,
        (SyncState.SYNCING, SyncEvent.COMPLETE): SyncState.SYNCED,
        (SyncState.SYNCING, SyncEvent.ERROR): SyncState.RETRY,
        (SyncState.SYNCED, SyncEvent.CACHE_EXPIRED): SyncState.IDLE,
        (SyncState.RETRY, SyncEvent.RETRY_DUE): SyncState.COLLECTING,
        **{(state, SyncEvent.RESET): SyncState.IDLE for state in SyncState},
    }
)


class IllegalTransitionError(ValueError):
    """An event that the current state does not accept."""

    def __init__(self, state: SyncState, event: SyncEvent) -> None:
        allowed = ", ".join(sorted(allowed_events(state)))
        super().__init__(
            f"sync workflow: event {event.value!r} is not allowed in state {state.value!r}"
            f" (allowed: {allowed})"
        )
        self.state = state
        self.event = event


def allowed_events(state: SyncState) -> frozenset[SyncEvent]:
    """The events ``state`` accepts."""
    return frozenset(event for (source, event) in _TRANSITIONS if source == state)


def transition(state: SyncState, event: SyncEvent) -> SyncState:
    """The state after ``event``; raises :class:`IllegalTransitionError` for a move not allowed."""
    try:
        return _TRANSITIONS[(SyncState(state), SyncEvent(event))]
    except KeyError:
        raise IllegalTransitionError(SyncState(state), SyncEvent(event)) from None


def retry_delay(
    attempt: int, *, base: float = RETRY_BASE_SECONDS, maximum: float = RETRY_MAX_SECONDS
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): 1, 2, 4, 8, 16, 30, 30, ..."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    return min(maximum, base * 2.0 ** min(attempt - 1, 64))
