"""The cluster's game inventory: which game files of each board config every node holds.

Pure: built from the node agents' manifests (:class:`~ringrift_operator.managers.syncplanning.
Manifest`) by :func:`build_inventory`; the manifest store (``reconcilers.manifests``) keeps one
current, the SyncPlan reconciler reports from it and the TrainingRun reconciler asks it whether a
config has enough new data (:meth:`Inventory.of`).

The unit is the game file (``games/<config>/<file>``), the manifests' unit: agents do not open
files, so a file is counted, not the games inside it. Per config:

- **per node**: the files and bytes each node holds;
- **distinct**: the files of the config anywhere in the cluster, each path once, in its wanted
  version (the same rule as sync planning: greatest mtime, then greatest sha256), so that a file
  synced to five nodes counts once;
- **data hash inputs**: ``(path, sha256)`` of those wanted versions, sorted by path, and
  :func:`data_hash` over them: two inventories with the same data give the same hash whatever the
  nodes and manifest order (the TrainingCoordinator's dedupe of ``(config, data)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ringrift_operator.api.contract import GAMES_SUBDIR
from ringrift_operator.managers.syncplanning import FileEntry, Manifest

DATA_HASH_LENGTH = 16  # hex digits kept, as the seed's training dedupe does


@dataclass(frozen=True, slots=True)
class NodeGames:
    """What one node holds of one config."""

    node: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ConfigInventory:
    """One config across the cluster (see the module doc)."""

    config: str
    nodes: Mapping[str, NodeGames] = field(default_factory=lambda: MappingProxyType({}))
    distinct_files: int = 0
    distinct_bytes: int = 0
    hash_inputs: tuple[tuple[str, str], ...] = ()  # (path, sha256), sorted by path

    @property
    def data_hash(self) -> str:
        return data_hash(self.config, self.hash_inputs)

    def files_on(self, node: str) -> int:
        """Files of the config on ``node`` (0 when it holds none or reported nothing)."""
        games = self.nodes.get(node)
        return games.files if games is not None else 0


@dataclass(frozen=True, slots=True)
class Inventory:
    """Every config's inventory over one set of manifests."""

    configs: Mapping[str, ConfigInventory]
    nodes: tuple[str, ...]  # the nodes whose manifests went in, sorted

    def of(self, config: str) -> ConfigInventory:
        """The inventory of ``config``; empty when no node holds its games."""
        return self.configs.get(config) or ConfigInventory(config=config)


def config_of(path: str) -> str | None:
    """The config of a game file path (``games/<config>/<file>``), None for any other path."""
    head, sep, rest = path.partition("/")
    if head != GAMES_SUBDIR or not sep:
        return None
    config, sep, name = rest.partition("/")
    return config if config and sep and name else None


def build_inventory(
    manifests: Iterable[Manifest], *, configs: Collection[str] | None = None
) -> Inventory:
    """The inventory of ``configs`` (None: every config found) over ``manifests``.

    Raises ``ValueError`` for two manifests of one node, as :func:`plan_sync` does.
    """
    wanted = None if configs is None else frozenset(configs)
    per_node: dict[str, dict[str, list[int]]] = {}  # config -> node -> [files, bytes]
    newest: dict[str, dict[str, FileEntry]] = {}  # config -> path -> wanted version
    seen: set[str] = set()
    for manifest in manifests:
        if manifest.node in seen:
            raise ValueError(f"two manifests for node {manifest.node!r}")
        seen.add(manifest.node)
        for path, entry in manifest.files.items():
            config = config_of(path)
            if config is None or (wanted is not None and config not in wanted):
                continue
            counts = per_node.setdefault(config, {}).setdefault(manifest.node, [0, 0])
            counts[0] += 1
            counts[1] += entry.size
            versions = newest.setdefault(config, {})
            best = versions.get(path)
            if best is None or (entry.mtime, entry.sha256) > (best.mtime, best.sha256):
                versions[path] = entry
    result = {}
    for config in sorted(per_node):
        versions = newest[config]
        result[config] = ConfigInventory(
            config=config,
            nodes=MappingProxyType(
                {n: NodeGames(n, f, b) for n, (f, b) in sorted(per_node[config].items())}
            ),
            distinct_files=len(versions),
            distinct_bytes=sum(e.size for e in versions.values()),
            hash_inputs=tuple(sorted((p, e.sha256) for p, e in versions.items())),
        )
    return Inventory(configs=MappingProxyType(result), nodes=tuple(sorted(seen)))


def data_hash(config: str, inputs: Iterable[tuple[str, str]]) -> str:
    """A short stable hash of one config's data: sha256 over ``config`` and the sorted
    ``(path, sha256)`` pairs, one per line; the first :data:`DATA_HASH_LENGTH` hex digits."""
    digest = hashlib.sha256(f"{config}\n".encode())
    for path, sha in sorted(inputs):
        digest.update(f"{path}\t{sha}\n".encode())
    return digest.hexdigest()[:DATA_HASH_LENGTH]
