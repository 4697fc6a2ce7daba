"""Sync planning: manifest freshness, the diff, source choice, chunking, the workflow, retries."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_operator.managers.syncplanning import (
    DEFAULT_SYNC_SETTINGS,
    FileEntry,
    IllegalTransitionError,
    Manifest,
    SkipReason,
    SyncEvent,
    SyncPlan,
    SyncSettings,
    SyncState,
    allowed_events,
    build_manifest,
    config_prefix,
    is_current,
    is_manifest_fresh,
    manifest_age,
    plan_sync,
    retry_delay,
    transition,
)

NOW = 1_000_000.0
OLD = NOW - 3_600.0  # the usual mtime of a game file in these tests


# --- builders ----------------------------------------------------------------------------------


def game(name: str, config: str = "square8_2p") -> str:
    return f"games/{config}/{name}.jsonl"


def entry(path: str, *, sha: str = "v1", mtime: float = OLD, size: int = 100) -> FileEntry:
    return FileEntry(path=path, size=size, mtime=mtime, sha256=sha)


def manifest(node: str, *entries: FileEntry, age: float = 10.0) -> Manifest:
    return build_manifest(node, entries, collected_at=NOW - age)


def plan(manifests: Iterable[Manifest], targets: Iterable[str], **kwargs: object) -> SyncPlan:
    return plan_sync(manifests, targets=targets, now=NOW, **kwargs)  # type: ignore[arg-type]


def deliveries(result: SyncPlan) -> set[tuple[str, str, str, str]]:
    """(target, source, path, sha) for every file the plan moves."""
    return {(t.target, t.source, f.path, f.sha256) for t in result.transfers for f in t.files}


def delivered(result: SyncPlan) -> set[tuple[str, str, str]]:
    """(target, path, sha): what arrives where, whoever sends it."""
    return {(t.target, f.path, f.sha256) for t in result.transfers for f in t.files}


# --- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "max_age", "fresh"),
    [
        pytest.param(0.0, 300.0, True, id="just-collected"),
        pytest.param(299.0, 300.0, True, id="almost-stale"),
        pytest.param(300.0, 300.0, True, id="exactly-max-age-is-fresh"),
        pytest.param(300.5, 300.0, False, id="just-past-max-age"),
        pytest.param(61.0, 60.0, False, id="custom-max-age"),
        pytest.param(-5.0, 300.0, True, id="collected-in-the-future-counts-as-new"),
    ],
)
def test_manifest_freshness(age: float, max_age: float, fresh: bool) -> None:
    assert is_manifest_fresh(manifest("n1", age=age), now=NOW, max_age=max_age) is fresh


def test_manifest_age_is_never_negative() -> None:
    assert manifest_age(manifest("n1", age=-30.0), now=NOW) == 0.0
    assert manifest_age(manifest("n1", age=42.0), now=NOW) == 42.0


def test_default_freshness_is_five_minutes() -> None:
    assert is_manifest_fresh(manifest("n1", age=300.0), now=NOW)
    assert not is_manifest_fresh(manifest("n1", age=301.0), now=NOW)


def test_build_manifest_keys_entries_by_path_and_sums_bytes() -> None:
    m = manifest("n1", entry(game("a"), size=10), entry(game("b"), size=32))
    assert set(m.files) == {game("a"), game("b")}
    assert m.total_bytes == 42


def test_config_prefix() -> None:
    assert config_prefix("hex8_3p") == "games/hex8_3p/"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_files_per_job": 0}, id="no-files-per-job"),
        pytest.param({"mtime_tolerance_seconds": -1.0}, id="negative-tolerance"),
        pytest.param({"manifest_max_age_seconds": 0.0}, id="zero-max-age"),
    ],
)
def test_settings_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SyncSettings(**kwargs)  # type: ignore[arg-type]


def test_default_settings_are_the_seeds() -> None:
    assert (
        SyncSettings(
            max_files_per_job=50, mtime_tolerance_seconds=60.0, manifest_max_age_seconds=300.0
        )
        == DEFAULT_SYNC_SETTINGS
    )


# --- what counts as current --------------------------------------------------------------------

WANT = entry(game("a"), sha="new", mtime=OLD)


@pytest.mark.parametrize(
    ("have", "current"),
    [
        pytest.param(None, False, id="absent"),
        pytest.param(entry(game("a"), sha="new", mtime=OLD - 999), True, id="same-hash-older"),
        pytest.param(entry(game("a"), sha="new", mtime=OLD + 999), True, id="same-hash-newer"),
        pytest.param(entry(game("a"), sha="old", mtime=OLD - 59), True, id="other-within-tol"),
        pytest.param(entry(game("a"), sha="old", mtime=OLD - 60), True, id="other-at-tol"),
        pytest.param(entry(game("a"), sha="old", mtime=OLD - 61), False, id="other-beyond-tol"),
        pytest.param(entry(game("a"), sha="old", mtime=OLD + 5), True, id="other-newer"),
    ],
)
def test_is_current(have: FileEntry | None, current: bool) -> None:
    assert is_current(have, WANT, tolerance=60.0) is current


# --- the diff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffCase:
    target: list[FileEntry]
    source: list[FileEntry]
    sent: set[str]  # paths sent from "src" to "dst"


DIFF_CASES = {
    "lacks-file": DiffCase(target=[], source=[entry(game("a"))], sent={game("a")}),
    "holds-same-hash": DiffCase(
        target=[entry(game("a"), mtime=OLD - 500)], source=[entry(game("a"))], sent=set()
    ),
    "holds-same-hash-newer-mtime-never-resent": DiffCase(
        target=[entry(game("a"), mtime=OLD - 9_999)],
        source=[entry(game("a"), mtime=OLD)],
        sent=set(),
    ),
    "older-version-beyond-tolerance": DiffCase(
        target=[entry(game("a"), sha="v0", mtime=OLD - 61)],
        source=[entry(game("a"), sha="v1")],
        sent={game("a")},
    ),
    "other-version-within-tolerance": DiffCase(
        target=[entry(game("a"), sha="v0", mtime=OLD - 60)],
        source=[entry(game("a"), sha="v1")],
        sent=set(),
    ),
    "target-has-the-newer-version": DiffCase(
        target=[entry(game("a"), sha="v2", mtime=OLD + 600)],
        source=[entry(game("a"), sha="v1")],
        sent=set(),
    ),
    "only-the-missing-ones": DiffCase(
        target=[entry(game("a")), entry(game("b"))],
        source=[entry(game("a")), entry(game("b")), entry(game("c")), entry(game("d"))],
        sent={game("c"), game("d")},
    ),
    "nothing-anywhere": DiffCase(target=[], source=[], sent=set()),
}


@pytest.mark.parametrize("case", DIFF_CASES.values(), ids=DIFF_CASES.keys())
def test_diff_between_one_source_and_one_target(case: DiffCase) -> None:
    result = plan([manifest("dst", *case.target), manifest("src", *case.source)], ["dst"])
    assert {p for (_, _, p, _) in deliveries(result)} == case.sent
    assert all(t.source == "src" and t.target == "dst" for t in result.transfers)
    assert result.missing == {"dst": len(case.sent)}


def test_target_with_newer_version_supplies_the_other_targets() -> None:
    result = plan(
        [
            manifest("a", entry(game("x"), sha="v2", mtime=OLD + 600)),
            manifest("b", entry(game("x"), sha="v1")),
        ],
        ["a", "b"],
    )
    assert deliveries(result) == {("b", "a", game("x"), "v2")}


def test_newest_version_across_sources_is_delivered() -> None:
    result = plan(
        [
            manifest("dst"),
            manifest("s1", entry(game("x"), sha="v1", mtime=OLD)),
            manifest("s2", entry(game("x"), sha="v3", mtime=OLD + 300)),
            manifest("s3", entry(game("x"), sha="v2", mtime=OLD + 100)),
        ],
        ["dst"],
    )
    assert deliveries(result) == {("dst", "s2", game("x"), "v3")}


@pytest.mark.parametrize("order", ["ab", "ba"], ids=["a-first", "b-first"])
def test_equal_mtimes_are_broken_by_hash_whatever_the_order(order: str) -> None:
    sources = {
        "a": manifest("a", entry(game("x"), sha="aaa")),
        "b": manifest("b", entry(game("x"), sha="bbb")),
    }
    result = plan([manifest("dst"), *(sources[n] for n in order)], ["dst"])
    assert deliveries(result) == {("dst", "b", game("x"), "bbb")}


def test_copies_of_the_wanted_version_with_other_mtimes_are_all_sources() -> None:
    # n1 holds v1 first; n2's v0 looks newer for a while; n3's copy of v1 is the newest of all.
    result = plan(
        [
            manifest("n1", *(entry(game(f"g{i}"), sha="v1", mtime=OLD) for i in range(10))),
            manifest("n2", *(entry(game(f"g{i}"), sha="v0", mtime=OLD + 10) for i in range(10))),
            manifest("n3", *(entry(game(f"g{i}"), sha="v1", mtime=OLD + 20) for i in range(10))),
            manifest("dst"),
        ],
        ["dst"],
    )
    assert {t.source for t in result.transfers} == {"n1", "n3"}
    assert {sha for (_, _, _, sha) in deliveries(result)} == {"v1"}


# --- filters and skipped nodes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("configs", "sent"),
    [
        pytest.param(None, {"sq", "hex", "model"}, id="no-filter-moves-everything"),
        pytest.param(["square8_2p"], {"sq"}, id="one-config"),
        pytest.param(["square8_2p", "hex8_2p"], {"sq", "hex"}, id="two-configs"),
        pytest.param(["square8"], set(), id="prefix-of-a-config-is-not-a-match"),
        pytest.param([], set(), id="empty-filter-moves-nothing"),
    ],
)
def test_config_filter(configs: list[str] | None, sent: set[str]) -> None:
    paths = {
        "sq": game("a", "square8_2p"),
        "hex": game("a", "hex8_2p"),
        "model": "models/square8_2p/m.pt",
    }
    result = plan(
        [manifest("dst"), manifest("src", *(entry(p) for p in paths.values()))],
        ["dst"],
        configs=configs,
    )
    assert {p for (_, _, p, _) in deliveries(result)} == {paths[k] for k in sent}


@pytest.mark.parametrize(
    ("manifests", "unreachable", "reason"),
    [
        pytest.param([], (), SkipReason.NO_MANIFEST, id="no-manifest"),
        pytest.param([manifest("dst", age=301.0)], (), SkipReason.STALE_MANIFEST, id="stale"),
        pytest.param([manifest("dst")], ("dst",), SkipReason.UNREACHABLE, id="unreachable"),
    ],
)
def test_targets_that_cannot_be_planned_are_skipped(
    manifests: list[Manifest], unreachable: tuple[str, ...], reason: SkipReason
) -> None:
    result = plan([*manifests, manifest("src", entry(game("a")))], ["dst"], unreachable=unreachable)
    assert result.skipped_targets == {"dst": reason}
    assert result.transfers == ()
    assert "dst" not in result.missing


def test_stale_sources_neither_send_nor_define_the_newest() -> None:
    result = plan(
        [
            manifest("dst"),
            manifest("fresh", entry(game("a"), sha="v1")),
            manifest("stale", entry(game("a"), sha="v9", mtime=NOW), entry(game("b")), age=900),
        ],
        ["dst"],
    )
    assert deliveries(result) == {("dst", "fresh", game("a"), "v1")}
    assert result.stale_nodes == ("stale",)


def test_manifest_age_limit_comes_from_settings() -> None:
    result = plan(
        [manifest("dst"), manifest("src", entry(game("a")), age=100.0)],
        ["dst"],
        settings=SyncSettings(manifest_max_age_seconds=60.0),
    )
    assert result.stale_nodes == ("src",)
    assert result.transfers == ()


def test_tolerance_comes_from_settings() -> None:
    manifests = [
        manifest("dst", entry(game("a"), sha="v0", mtime=OLD - 100)),
        manifest("src", entry(game("a"), sha="v1")),
    ]
    assert plan(manifests, ["dst"]).total_files == 1
    assert plan(manifests, ["dst"], settings=SyncSettings(mtime_tolerance_seconds=120)).is_empty


def test_files_only_unreachable_nodes_hold_are_unavailable() -> None:
    result = plan(
        [
            manifest("dst"),
            manifest("down", entry(game("a")), entry(game("b"))),
            manifest("up", entry(game("b"))),
        ],
        ["dst"],
        unreachable={"down"},
    )
    assert result.unavailable == (game("a"),)
    assert deliveries(result) == {("dst", "up", game("b"), "v1")}
    assert result.missing == {"dst": 2}  # needed, supplied or not


def test_unreachable_node_still_defines_the_newest_version() -> None:
    result = plan(
        [
            manifest("dst", entry(game("a"), sha="v1")),
            manifest("down", entry(game("a"), sha="v2", mtime=NOW)),
            manifest("up", entry(game("a"), sha="v1")),
        ],
        ["dst"],
        unreachable={"down"},
    )
    assert result.unavailable == (game("a"),)
    assert result.transfers == ()


def test_duplicate_targets_are_planned_once() -> None:
    result = plan([manifest("dst"), manifest("src", entry(game("a")))], ["dst", "dst"])
    assert result.total_files == 1


def test_two_manifests_for_one_node_is_an_error() -> None:
    with pytest.raises(ValueError, match="two manifests for node 'n1'"):
        plan([manifest("n1"), manifest("n1")], ["n1"])


def test_empty_input_gives_an_empty_plan() -> None:
    result = plan([], [])
    assert result == SyncPlan()
    assert result.is_empty
    assert result.total_files == 0


# --- choosing sources --------------------------------------------------------------------------


def many(count: int, *, size: int = 100, prefix: str = "g") -> list[FileEntry]:
    return [entry(game(f"{prefix}{i:04d}"), size=size) for i in range(count)]


def bytes_by_source(result: SyncPlan) -> dict[str, int]:
    totals: dict[str, int] = {}
    for t in result.transfers:
        totals[t.source] = totals.get(t.source, 0) + t.total_bytes
    return totals


def test_unhealthy_peer_is_avoided_when_a_healthy_one_holds_the_file() -> None:
    result = plan(
        [manifest("dst"), manifest("sick", *many(20)), manifest("well", *many(20))],
        ["dst"],
        unhealthy={"sick"},
    )
    assert {t.source for t in result.transfers} == {"well"}


def test_unhealthy_peer_serves_what_nobody_else_holds() -> None:
    result = plan(
        [
            manifest("dst"),
            manifest("sick", *many(5), entry(game("rare"))),
            manifest("well", *many(5)),
        ],
        ["dst"],
        unhealthy={"sick"},
    )
    assert {(s, p) for (_, s, p, _) in deliveries(result) if s == "sick"} == {
        ("sick", game("rare"))
    }


def test_bytes_are_balanced_across_sources() -> None:
    result = plan([manifest("dst"), *(manifest(f"s{i}", *many(300)) for i in range(3))], ["dst"])
    totals = bytes_by_source(result)
    assert set(totals) == {"s0", "s1", "s2"}
    assert max(totals.values()) - min(totals.values()) <= 100  # one file apart at most


def test_balancing_spans_targets() -> None:
    result = plan(
        [manifest("t1"), manifest("t2"), manifest("s1", *many(10)), manifest("s2", *many(10))],
        ["t1", "t2"],
    )
    assert bytes_by_source(result) == {"s1": 1000, "s2": 1000}


def test_queued_load_steers_new_work_away() -> None:
    result = plan(
        [manifest("dst"), manifest("busy", *many(10)), manifest("idle", *many(10))],
        ["dst"],
        source_load={"busy": 10_000, "nobody": 5},
    )
    assert {t.source for t in result.transfers} == {"idle"}


def test_balancing_counts_files_only_one_peer_holds() -> None:
    # s1 alone holds 10 big files, so the shared small ones go to s2.
    result = plan(
        [
            manifest("dst"),
            manifest("s1", *many(10, size=1000, prefix="big"), *many(10)),
            manifest("s2", *many(10)),
        ],
        ["dst"],
    )
    assert bytes_by_source(result) == {"s1": 10_000, "s2": 1_000}


def test_an_unreachable_healthy_peer_leaves_the_file_to_an_unhealthy_one() -> None:
    result = plan(
        [manifest("dst"), manifest("down", entry(game("a"))), manifest("sick", entry(game("a")))],
        ["dst"],
        unhealthy={"sick"},
        unreachable={"down"},
    )
    assert deliveries(result) == {("dst", "sick", game("a"), "v1")}


def test_large_clusters_beyond_sixty_four_nodes() -> None:
    peers = [manifest(f"n{i:03d}", *many(2)) for i in range(99)]
    last = manifest("n099", *many(2), entry(game("only-here")))
    result = plan([manifest("dst"), *peers, last], ["dst"])
    assert ("dst", "n099", game("only-here"), "v1") in deliveries(result)
    assert result.total_files == 3
    assert len({t.source for t in result.transfers}) == 3  # two shared files spread out


# --- transfers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "max_files", "sizes"),
    [
        pytest.param(120, 50, [50, 50, 20], id="default-limit"),
        pytest.param(50, 50, [50], id="exactly-one-job"),
        pytest.param(51, 50, [50, 1], id="one-over"),
        pytest.param(3, 1, [1, 1, 1], id="one-file-jobs"),
        pytest.param(0, 50, [], id="nothing"),
    ],
)
def test_transfers_hold_at_most_max_files(files: int, max_files: int, sizes: list[int]) -> None:
    result = plan(
        [manifest("dst"), manifest("src", *many(files, size=7))],
        ["dst"],
        settings=SyncSettings(max_files_per_job=max_files),
    )
    assert [len(t.files) for t in result.transfers] == sizes
    assert [t.total_bytes for t in result.transfers] == [7 * n for n in sizes]
    assert result.total_bytes == 7 * files
    assert result.total_files == files


def test_transfers_are_grouped_by_target_then_source_and_keep_manifest_order() -> None:
    result = plan(
        [
            manifest("t1"),
            manifest("t2", entry(game("b"))),
            manifest("s1", entry(game("a")), entry(game("c"))),
        ],
        ["t1", "t2"],
    )
    assert [(t.target, t.source, t.paths) for t in result.transfers] == [
        ("t1", "t2", (game("b"),)),
        ("t1", "s1", (game("a"), game("c"))),
        ("t2", "s1", (game("a"), game("c"))),
    ]
    assert result.missing == {"t1": 3, "t2": 2}


def test_transfers_carry_the_wanted_version() -> None:
    wanted = entry(game("a"), sha="v7", mtime=OLD + 1, size=55)
    result = plan([manifest("dst"), manifest("src", wanted)], ["dst"])
    assert result.transfers[0].files == (wanted,)


# --- properties --------------------------------------------------------------------------------

PATHS = [game(f"p{i}") for i in range(8)] + ["models/square8_2p/m.pt"]
NODES = ["n0", "n1", "n2", "n3", "n4"]
MTIMES = [OLD, OLD + 30, OLD + 61, OLD + 200]


@dataclass(frozen=True)
class Cluster:
    manifests: list[Manifest]
    targets: list[str]
    unhealthy: set[str]
    unreachable: set[str]
    max_files: int


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    nodes = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=5, unique=True))
    manifests = []
    for node in nodes:
        files = draw(
            st.dictionaries(
                st.sampled_from(PATHS),
                st.tuples(st.sampled_from("abc"), st.sampled_from(MTIMES)),
                max_size=len(PATHS),
            )
        )
        stale = draw(st.booleans()) and draw(st.booleans())  # a quarter of the time
        manifests.append(
            manifest(
                node,
                *(
                    # one size per (path, version): a version is its content
                    entry(p, sha=sha, mtime=mtime, size=len(p) * 10 + ord(sha))
                    for p, (sha, mtime) in files.items()
                ),
                age=400.0 if stale else 10.0,
            )
        )
    targets = draw(st.lists(st.sampled_from(NODES), max_size=5, unique=True))
    unhealthy = draw(st.sets(st.sampled_from(NODES)))
    unreachable = draw(st.sets(st.sampled_from(NODES), max_size=1))
    max_files = draw(st.integers(min_value=1, max_value=4))
    return Cluster(manifests, targets, unhealthy, unreachable, max_files)


def brute_force_newest(manifests: Iterable[Manifest]) -> dict[str, FileEntry]:
    newest: dict[str, FileEntry] = {}
    for m in manifests:
        if not is_manifest_fresh(m, now=NOW):
            continue
        for path, e in m.files.items():
            best = newest.get(path)
            if best is None or (e.mtime, e.sha256) > (best.mtime, best.sha256):
                newest[path] = e
    return newest


def apply(manifests: Iterable[Manifest], result: SyncPlan) -> dict[str, dict[str, FileEntry]]:
    """Each node's files after every transfer of the plan succeeded."""
    held = {m.node: dict(m.files) for m in manifests}
    for t in result.transfers:
        for f in t.files:
            held[t.target][f.path] = f
    return held


def run(
    cluster: Cluster,
) -> tuple[SyncPlan, Mapping[str, Manifest]]:
    result = plan(
        cluster.manifests,
        cluster.targets,
        unhealthy=cluster.unhealthy,
        unreachable=cluster.unreachable,
        settings=SyncSettings(max_files_per_job=cluster.max_files),
    )
    return result, {m.node: m for m in cluster.manifests}


@given(clusters())
@settings(max_examples=300, deadline=None)
def test_applying_the_plan_brings_every_target_up_to_date(
    cluster: Cluster,
) -> None:
    result, _ = run(cluster)
    newest = brute_force_newest(cluster.manifests)
    after = apply(cluster.manifests, result)
    planned = [t for t in cluster.targets if t not in result.skipped_targets]
    for target in planned:
        for path, want in newest.items():
            if path in result.unavailable:
                continue
            assert is_current(after[target].get(path), want, tolerance=60.0), (target, path)


@given(clusters())
@settings(max_examples=300, deadline=None)
def test_every_transfer_is_small_valid_and_never_resends(
    cluster: Cluster,
) -> None:
    result, by_node = run(cluster)
    unhealthy, unreachable, max_files = cluster.unhealthy, cluster.unreachable, cluster.max_files
    newest = brute_force_newest(cluster.manifests)
    for t in result.transfers:
        assert 1 <= len(t.files) <= max_files
        assert t.total_bytes == sum(f.size for f in t.files)
        assert t.source != t.target
        assert t.source not in unreachable
        for f in t.files:
            assert f == newest[f.path]  # the wanted version
            assert by_node[t.source].files[f.path].sha256 == f.sha256  # the source holds it
            had = by_node[t.target].files.get(f.path)
            assert had is None or had.sha256 != f.sha256  # a same-hash copy is never re-sent
            if t.source in unhealthy:
                healthy_holders = [
                    n
                    for n, m in by_node.items()
                    if n not in unhealthy
                    and n not in unreachable
                    and is_manifest_fresh(m, now=NOW)
                    and f.path in m.files
                    and m.files[f.path].sha256 == f.sha256
                ]
                assert healthy_holders == []
    assert result.total_bytes == sum(t.total_bytes for t in result.transfers)


@given(clusters())
@settings(max_examples=200, deadline=None)
def test_a_second_round_after_applying_has_nothing_to_send(
    cluster: Cluster,
) -> None:
    result, _ = run(cluster)
    after = apply(cluster.manifests, result)
    again = plan(
        [
            build_manifest(m.node, after[m.node].values(), collected_at=m.collected_at)
            for m in cluster.manifests
        ],
        cluster.targets,
        unhealthy=cluster.unhealthy,
        unreachable=cluster.unreachable,
    )
    assert again.is_empty
    assert again.unavailable == result.unavailable


@given(clusters(), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_the_plan_does_not_depend_on_manifest_order(cluster: Cluster, rnd: random.Random) -> None:
    result, _ = run(cluster)
    shuffled = list(cluster.manifests)
    rnd.shuffle(shuffled)
    other, _ = run(replace(cluster, manifests=shuffled))
    assert delivered(other) == delivered(result)
    assert other.missing == result.missing
    assert other.unavailable == result.unavailable
    assert other.total_bytes == result.total_bytes


# --- the sync workflow -------------------------------------------------------------------------

LEGAL = {
    (SyncState.IDLE, SyncEvent.COLLECT): SyncState.COLLECTING,
    (SyncState.COLLECTING, SyncEvent.MANIFESTS_READY): SyncState.SYNCING,
    (SyncState.COLLECTING, SyncEvent.ERROR): SyncState.RETRY,
    (SyncState.SYNCING, SyncEvent.COMPLETE): SyncState.SYNCED,
    (SyncState.SYNCING, SyncEvent.ERROR): SyncState.RETRY,
    (SyncState.SYNCED, SyncEvent.CACHE_EXPIRED): SyncState.IDLE,
    (SyncState.RETRY, SyncEvent.RETRY_DUE): SyncState.COLLECTING,
    **{(s, SyncEvent.RESET): SyncState.IDLE for s in SyncState},
}
ILLEGAL = [(s, e) for s in SyncState for e in SyncEvent if (s, e) not in LEGAL]


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [pytest.param(s, e, a, id=f"{s}-{e}") for (s, e), a in LEGAL.items()],
)
def test_legal_transitions(state: SyncState, event: SyncEvent, after: SyncState) -> None:
    assert transition(state, event) is after


@pytest.mark.parametrize(
    ("state", "event"), [pytest.param(s, e, id=f"{s}-{e}") for s, e in ILLEGAL]
)
def test_illegal_transitions_are_refused(state: SyncState, event: SyncEvent) -> None:
    with pytest.raises(IllegalTransitionError) as raised:
        transition(state, event)
    message = str(raised.value)
    assert f"'{event.value}'" in message
    assert f"'{state.value}'" in message
    assert "allowed:" in message
    assert (raised.value.state, raised.value.event) == (state, event)


def test_transition_accepts_wire_strings() -> None:
    assert transition("Idle", "collect") is SyncState.COLLECTING  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "events"),
    [
        pytest.param(SyncState.IDLE, {"collect", "reset"}, id="idle"),
        pytest.param(SyncState.COLLECTING, {"manifests_ready", "error", "reset"}, id="collecting"),
        pytest.param(SyncState.SYNCING, {"complete", "error", "reset"}, id="syncing"),
        pytest.param(SyncState.SYNCED, {"cache_expired", "reset"}, id="synced"),
        pytest.param(SyncState.RETRY, {"retry_due", "reset"}, id="retry"),
    ],
)
def test_allowed_events(state: SyncState, events: set[str]) -> None:
    assert allowed_events(state) == events


def test_every_state_is_reachable_and_none_is_a_dead_end() -> None:
    def reachable(start: SyncState) -> set[SyncState]:
        seen, todo = {start}, [start]
        while todo:
            state = todo.pop()
            for event in allowed_events(state):
                nxt = transition(state, event)
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(SyncState.IDLE) == set(SyncState)
    for state in SyncState:
        assert SyncState.IDLE in reachable(state)


@given(st.lists(st.sampled_from(list(SyncEvent)), max_size=60))
def test_random_event_streams_only_follow_the_diagram(events: list[SyncEvent]) -> None:
    state = SyncState.IDLE
    for event in events:
        if (state, event) in LEGAL:
            after = transition(state, event)
            assert after is LEGAL[(state, event)]
            if after is SyncState.SYNCED:
                assert state is SyncState.SYNCING  # synced only after syncing
            state = after
        else:
            with pytest.raises(IllegalTransitionError):
                transition(state, event)


# --- retry backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0), (10_000, 30.0)],
    ids=lambda v: str(v),
)
def test_retry_delay(attempt: int, delay: float) -> None:
    assert retry_delay(attempt) == delay


def test_retry_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="1-based"):
        retry_delay(0)


def test_retry_delay_custom_bounds() -> None:
    assert [retry_delay(a, base=0.5, maximum=3.0) for a in range(1, 6)] == [0.5, 1, 2, 3, 3]


@given(st.integers(min_value=1, max_value=500))
def test_retry_delay_grows_and_stays_bounded(attempt: int) -> None:
    assert 1.0 <= retry_delay(attempt) <= 30.0
    assert retry_delay(attempt) <= retry_delay(attempt + 1)
