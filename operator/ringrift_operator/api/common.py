"""Vocabulary shared by every resource: boards, engine modes, config keys, API group names."""

from __future__ import annotations

from enum import StrEnum

GROUP = "ringrift.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "ringrift"
OPERATOR_NAME = "ringrift-operator"  # also the schedulerName of the pods the operator places

# Labels and annotations the operator puts on what it creates.
LABEL_PREFIX = "ringrift.ai/"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB_KIND = f"{LABEL_PREFIX}job-kind"
LABEL_OWNER_KIND = f"{LABEL_PREFIX}owner-kind"
LABEL_OWNER_NAME = f"{LABEL_PREFIX}owner-name"
LABEL_CONFIG = f"{LABEL_PREFIX}config"
LABEL_ATTEMPT = f"{LABEL_PREFIX}attempt"
ANNOTATION_EPOCH = f"{LABEL_PREFIX}epoch"
ANNOTATION_POWER_SCORE = f"{LABEL_PREFIX}power-score"
ANNOTATION_DECIDED_AT = f"{LABEL_PREFIX}decided-at"  # on pods the operator placed: when
ANNOTATION_AGENT_ENDPOINT = f"{LABEL_PREFIX}agent-endpoint"  # on Nodes, set by the node agent


class Board(StrEnum):
    """RingRift board types."""

    SQUARE8 = "square8"
    SQUARE19 = "square19"
    HEX8 = "hex8"
    HEXAGONAL = "hexagonal"


class EngineMode(StrEnum):
    """Self-play engines. Search modes run the search self-play script; simple modes the GPU one."""

    MAXN = "maxn"
    BRS = "brs"
    MCTS = "mcts"
    GUMBEL_MCTS = "gumbel-mcts"
    POLICY_ONLY = "policy-only"
    NN_DESCENT = "nn-descent"
    NN_MINIMAX = "nn-minimax"
    RANDOM = "random"
    HEURISTIC = "heuristic"
    NNUE_GUIDED = "nnue-guided"


SEARCH_ENGINE_MODES: frozenset[EngineMode] = frozenset(
    {
        EngineMode.MAXN,
        EngineMode.BRS,
        EngineMode.MCTS,
        EngineMode.GUMBEL_MCTS,
        EngineMode.POLICY_ONLY,
        EngineMode.NN_DESCENT,
        EngineMode.NN_MINIMAX,
    }
)
SIMPLE_ENGINE_MODES: frozenset[EngineMode] = frozenset(EngineMode) - SEARCH_ENGINE_MODES
# Engine modes that evaluate a neural network and so need a GPU (gpus >= 1).
GPU_ENGINE_MODES: frozenset[EngineMode] = frozenset(
    {
        EngineMode.GUMBEL_MCTS,
        EngineMode.POLICY_ONLY,
        EngineMode.NN_DESCENT,
        EngineMode.NN_MINIMAX,
        EngineMode.NNUE_GUIDED,
    }
)

MIN_PLAYERS = 2
MAX_PLAYERS = 4


def config_key(board: Board | str, players: int) -> str:
    """The seed's config key, e.g. ``square8_2p``."""
    return f"{Board(board).value}_{players}p"


def parse_config_key(key: str) -> tuple[Board, int]:
    """Inverse of :func:`config_key`; raises ValueError on a malformed key."""
    board, sep, players = key.rpartition("_")
    if not sep or not players.endswith("p") or not players[:-1].isdigit():
        raise ValueError(f"not a config key: {key!r} (expected e.g. 'square8_2p')")
    count = int(players[:-1])
    if not MIN_PLAYERS <= count <= MAX_PLAYERS:
        raise ValueError(f"players out of range in config key {key!r}")
    return Board(board), count


ALL_CONFIG_KEYS: tuple[str, ...] = tuple(
    config_key(b, p) for b in Board for p in range(MIN_PLAYERS, MAX_PLAYERS + 1)
)
