"""Game records of the sample workload, and the data-directory file helpers every job kind uses.

A game record is one JSON object per line in ``games/<config>/*.jsonl``: fake, but shaped like the
records RingRift's self-play scripts write (ids, config, engine, model, seed, moves, winner), and
validated on read so that export and training reject what they cannot use. Files are always
written to a hidden temporary name and renamed, so a reader (export, the node agent's manifest)
never sees half a file. Used by ``selfplay``, ``export``, ``training`` and ``gauntlet``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ringrift_operator.api.common import MAX_PLAYERS, MIN_PLAYERS, Board, EngineMode, config_key

GAME_SCHEMA = "ringrift.sample-game/v1"
DATA_SUFFIX = ".jsonl"
TMP_SUFFIX = ".tmp"


class BadInputError(Exception):
    """The workload's input (environment, flags or data) is unusable: retrying will not help."""


class MoveType(StrEnum):
    """Kinds of RingRift moves a record may contain."""

    PLACE_RING = "place_ring"
    MOVE_STACK = "move_stack"
    OVERTAKING_CAPTURE = "overtaking_capture"
    PROCESS_LINE = "process_line"
    PROCESS_TERRITORY = "process_territory"


class Termination(StrEnum):
    """Why a game ended."""

    RINGS_ELIMINATED = "rings_eliminated"
    TERRITORY = "territory"
    MOVE_LIMIT = "move_limit"


class Move(BaseModel):
    """One ply of a game."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    ply: int = Field(ge=0)
    player: int = Field(ge=0, lt=MAX_PLAYERS, description="0-based seat of the mover")
    type: MoveType
    from_: str | None = Field(default=None, alias="from", description="Origin cell, if any")
    to: str = Field(min_length=1, description="Target cell")
    captured: int = Field(default=0, ge=0, description="Rings captured by this move")


class GameRecord(BaseModel):
    """One finished game, as a line of a games file."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    schema_: str = Field(alias="schema", pattern=r"^ringrift\.sample-game/")
    game_id: str = Field(alias="gameId", min_length=1)
    config: str
    board: Board
    players: int = Field(ge=MIN_PLAYERS, le=MAX_PLAYERS)
    engine_mode: EngineMode = Field(alias="engineMode")
    model: str | None = Field(description="Model the engine used; null for model-free engines")
    seed: int = Field(ge=0)
    moves: list[Move] = Field(min_length=1)
    winner: int | None = Field(ge=0, description="0-based seat of the winner; null for a draw")
    length: int = Field(ge=1)
    termination: Termination
    created_at: datetime = Field(alias="createdAt")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.config != config_key(self.board, self.players):
            raise ValueError(f"config {self.config!r} does not match board and players")
        if self.length != len(self.moves):
            raise ValueError(f"length {self.length} but {len(self.moves)} moves")
        if self.winner is not None and self.winner >= self.players:
            raise ValueError(f"winner {self.winner} out of range for {self.players} players")
        cells = frozenset(board_cells(self.board))
        for index, move in enumerate(self.moves):
            if move.ply != index:
                raise ValueError(f"move {index} has ply {move.ply}")
            if move.player >= self.players:
                raise ValueError(f"move {index}: player {move.player} out of range")
            if move.to not in cells or (move.from_ is not None and move.from_ not in cells):
                raise ValueError(f"move {index}: cell not on a {self.board.value} board")
        return self


# (rings each player places first, shortest game, longest game) per board.
_BOARD_SHAPE: dict[Board, tuple[int, int, int]] = {
    Board.SQUARE8: (4, 40, 120),
    Board.HEX8: (4, 40, 120),
    Board.SQUARE19: (8, 120, 260),
    Board.HEXAGONAL: (8, 120, 260),
}
_HEX_RADIUS = {Board.HEX8: 4, Board.HEXAGONAL: 12}
_SQUARE_SIDE = {Board.SQUARE8: 8, Board.SQUARE19: 19}
_LATER_MOVES: tuple[tuple[MoveType, int], ...] = (
    (MoveType.MOVE_STACK, 70),
    (MoveType.OVERTAKING_CAPTURE, 20),
    (MoveType.PROCESS_LINE, 6),
    (MoveType.PROCESS_TERRITORY, 4),
)


@cache
def board_cells(board: Board) -> tuple[str, ...]:
    """Names of the cells of a board: ``a1``… on square boards, axial ``q,r`` on hex boards."""
    if board in _SQUARE_SIDE:
        side = _SQUARE_SIDE[board]
        return tuple(f"{chr(ord('a') + x)}{y + 1}" for y in range(side) for x in range(side))
    radius = _HEX_RADIUS[board]
    return tuple(
        f"{q},{r}"
        for q in range(-radius, radius + 1)
        for r in range(-radius, radius + 1)
        if abs(q + r) <= radius
    )


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (the same parts give the same seed on every host)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def build_game(
    *,
    game_id: str,
    board: Board,
    players: int,
    engine_mode: EngineMode,
    model: str | None,
    seed: int,
    created_at: datetime,
) -> GameRecord:
    """Play one fake game: a placement phase, then movement, captures and line/territory moves."""
    rng = random.Random(seed)
    cells = board_cells(board)
    rings, shortest, longest = _BOARD_SHAPE[board]
    length = rng.randint(shortest, longest)
    placements = min(rings * players, length // 2)
    kinds = [kind for kind, _ in _LATER_MOVES]
    weights = [weight for _, weight in _LATER_MOVES]
    moves: list[Move] = []
    for ply in range(length):
        player = ply % players
        kind = MoveType.PLACE_RING if ply < placements else rng.choices(kinds, weights)[0]
        origin: str | None = None
        captured = 0
        if kind in (MoveType.MOVE_STACK, MoveType.OVERTAKING_CAPTURE):
            origin = rng.choice(cells)
        if kind is MoveType.OVERTAKING_CAPTURE:
            captured = rng.randint(1, 3)
        target = rng.choice(cells)
        while target == origin:
            target = rng.choice(cells)
        moves.append(
            Move(ply=ply, player=player, type=kind, from_=origin, to=target, captured=captured)
        )
    termination = rng.choices(list(Termination), [70, 20, 10])[0]
    draw = termination is Termination.MOVE_LIMIT and rng.random() < 0.5
    return GameRecord(
        schema_=GAME_SCHEMA,
        game_id=game_id,
        config=config_key(board, players),
        board=board,
        players=players,
        engine_mode=engine_mode,
        model=model,
        seed=seed,
        moves=moves,
        winner=None if draw else rng.randrange(players),
        length=length,
        termination=termination,
        created_at=created_at,
    )


def encode_games(records: Iterable[GameRecord]) -> bytes:
    """JSON lines, one record per line, wire (camelCase) names; a move's ``from`` and
    ``captured`` are left out when they are null and 0."""
    return b"".join(
        r.model_dump_json(by_alias=True, exclude_defaults=True).encode() + b"\n" for r in records
    )


def parse_game(line: str) -> GameRecord:
    """Parse and validate one line of a games file; raises ValueError when malformed."""
    try:
        return GameRecord.model_validate_json(line)
    except ValidationError as exc:
        raise ValueError(f"malformed game record: {exc.error_count()} error(s)") from exc


def read_games(path: Path) -> tuple[list[GameRecord], int]:
    """The valid records of a games file, and how many non-empty lines were malformed."""
    records: list[GameRecord] = []
    malformed = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                records.append(parse_game(line))
            except ValueError:
                malformed += 1
    return records, malformed


def list_data_files(directory: Path, *, suffix: str = DATA_SUFFIX) -> list[Path]:
    """Finished data files in a directory, sorted by name; hidden (in-progress) files excluded."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.name.endswith(suffix) and not p.name.startswith(".") and p.is_file()
    )


def attempt_stem(*, job_name: str, attempt: int) -> str:
    """The file-name stem unique to one attempt of one job, e.g. ``spj-sq8-a2``."""
    return f"{job_name}-a{attempt}"


def temp_path(path: Path) -> Path:
    """The hidden name a file is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_json_object(line: str) -> dict[str, object] | None:
    """A JSON object from one line, or None when the line is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
