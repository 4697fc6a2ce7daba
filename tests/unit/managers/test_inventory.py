"""The cluster game inventory: files per config per node, distinct files, the data hash."""

from __future__ import annotations

import random

import pytest

from ringrift_operator.managers.inventory import (
    ConfigInventory,
    build_inventory,
    config_of,
    data_hash,
)
from ringrift_operator.managers.syncplanning import FileEntry, Manifest, build_manifest

NOW = 1_000_000.0


def game(name: str, config: str = "square8_2p") -> str:
    return f"games/{config}/{name}.jsonl"


def entry(path: str, *, sha: str = "a" * 64, mtime: float = NOW - 100, size: int = 10) -> FileEntry:
    return FileEntry(path=path, size=size, mtime=mtime, sha256=sha)


def manifest(node: str, *entries: FileEntry) -> Manifest:
    return build_manifest(node, entries, collected_at=NOW)


@pytest.mark.parametrize(
    ("path", "config"),
    [
        pytest.param("games/square8_2p/a.jsonl", "square8_2p", id="game-file"),
        pytest.param("games/hex8_3p/sub/a.jsonl", "hex8_3p", id="nested"),
        pytest.param("models/square8_2p/m.pt", None, id="not-a-game"),
        pytest.param("games/square8_2p", None, id="no-file-name"),
        pytest.param("games//a.jsonl", None, id="empty-config"),
        pytest.param("games", None, id="bare-dir"),
    ],
)
def test_config_of_a_path(path: str, config: str | None) -> None:
    assert config_of(path) == config


def test_counts_files_and_bytes_per_node_and_distinct_files_once() -> None:
    a, b = game("a"), game("b")
    inventory = build_inventory(
        [
            manifest("n1", entry(a, size=10), entry(b, size=20)),
            manifest("n2", entry(a, size=10)),  # a copy of n1's a
            manifest("n3", entry(game("c", "hex8_2p"), size=5)),
        ]
    )
    sq = inventory.of("square8_2p")
    assert {n: (g.files, g.bytes) for n, g in sq.nodes.items()} == {"n1": (2, 30), "n2": (1, 10)}
    assert (sq.distinct_files, sq.distinct_bytes) == (2, 30)
    assert sq.files_on("n2") == 1
    assert sq.files_on("n3") == 0
    assert inventory.of("hex8_2p").distinct_files == 1
    assert inventory.nodes == ("n1", "n2", "n3")


def test_ignores_other_files_and_other_configs_when_asked() -> None:
    inventory = build_inventory(
        [manifest("n1", entry(game("a")), entry(game("b", "hex8_2p")), entry("models/x.pt"))],
        configs=["square8_2p"],
    )
    assert list(inventory.configs) == ["square8_2p"]
    assert inventory.of("hex8_2p") == ConfigInventory(config="hex8_2p")


def test_an_unknown_config_is_empty() -> None:
    empty = build_inventory([]).of("square19_4p")
    assert (empty.distinct_files, empty.distinct_bytes, dict(empty.nodes)) == (0, 0, {})
    assert empty.data_hash == data_hash("square19_4p", [])


def test_the_wanted_version_is_the_newest_then_the_greatest_hash() -> None:
    path = game("a")
    old, new = entry(path, sha="1" * 64, mtime=NOW - 500), entry(path, sha="2" * 64, mtime=NOW)
    tie = entry(path, sha="3" * 64, mtime=NOW)
    inv = build_inventory([manifest("n1", old), manifest("n2", new), manifest("n3", tie)])
    assert inv.of("square8_2p").hash_inputs == ((path, "3" * 64),)
    assert inv.of("square8_2p").distinct_files == 1


def test_the_data_hash_depends_on_the_data_not_on_nodes_or_order() -> None:
    files = [entry(game(f"g{i}"), sha=f"{i:064x}") for i in range(20)]
    spread = [manifest(f"n{i % 3}", *files[i::3]) for i in range(3)]
    together = [manifest("solo", *files)]
    shuffled = list(spread)
    random.Random(7).shuffle(shuffled)
    hashes = {build_inventory(ms).of("square8_2p").data_hash for ms in (spread, together, shuffled)}
    assert len(hashes) == 1
    assert len(hashes.pop()) == 16


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda fs: fs[:-1], id="a-file-fewer"),
        pytest.param(lambda fs: [*fs[:-1], entry(fs[-1].path, sha="f" * 64)], id="a-new-version"),
        pytest.param(lambda fs: [*fs, entry(game("extra"))], id="a-file-more"),
    ],
)
def test_the_data_hash_changes_with_the_data(change: object) -> None:
    files = [entry(game(f"g{i}"), sha=f"{i:064x}") for i in range(5)]
    before = build_inventory([manifest("n", *files)]).of("square8_2p").data_hash
    after = build_inventory([manifest("n", *change(files))]).of("square8_2p").data_hash  # type: ignore[operator]
    assert before != after


def test_the_config_is_part_of_the_data_hash() -> None:
    inputs = [("games/x/a.jsonl", "a" * 64)]
    assert data_hash("square8_2p", inputs) != data_hash("square8_3p", inputs)


def test_two_manifests_of_one_node_are_refused() -> None:
    with pytest.raises(ValueError, match="two manifests"):
        build_inventory([manifest("n1"), manifest("n1")])
