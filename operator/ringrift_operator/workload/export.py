"""Export job of the sample workload: turn a config's games into one training dataset.

Reads every finished ``games/<config>/*.jsonl`` under the data directory (games from every node
that SyncPlan brought here), skips malformed records and duplicate game ids, and writes one
sample per move to ``<output>/training/<config>/<job>-a<attempt>.jsonl``. Called by
``workload.main``; its output is read by ``training``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ringrift_operator.api.contract import GAMES_SUBDIR, TRAINING_SUBDIR, JobKind, WorkloadResult
from ringrift_operator.workload.games import (
    DATA_SUFFIX,
    BadInputError,
    GameRecord,
    attempt_stem,
    list_data_files,
    read_games,
    write_atomic,
)

SAMPLE_KEYS = ("gameId", "ply", "player", "players", "moveType", "from", "to", "value")


def dataset_path(*, output_dir: Path, config: str, job_name: str, attempt: int) -> Path:
    """Where one export attempt writes its dataset."""
    stem = attempt_stem(job_name=job_name, attempt=attempt)
    return output_dir / TRAINING_SUBDIR / config / f"{stem}{DATA_SUFFIX}"


def build_samples(game: GameRecord) -> list[dict[str, object]]:
    """One sample per move: the move and the final outcome from the mover's point of view."""
    samples: list[dict[str, object]] = []
    for move in game.moves:
        value = 0 if game.winner is None else (1 if move.player == game.winner else -1)
        samples.append(
            {
                "gameId": game.game_id,
                "ply": move.ply,
                "player": move.player,
                "players": game.players,
                "moveType": move.type.value,
                "from": move.from_,
                "to": move.to,
                "value": value,
            }
        )
    return samples


def load_config_games(*, data_dir: Path, config: str) -> tuple[list[GameRecord], int]:
    """Every valid game of a config under the data directory (first copy of each id wins), and
    the number of malformed or mismatched records skipped."""
    seen: set[str] = set()
    games: list[GameRecord] = []
    skipped = 0
    for path in list_data_files(data_dir / GAMES_SUBDIR / config):
        records, malformed = read_games(path)
        skipped += malformed
        for record in records:
            if record.config != config:
                skipped += 1
            elif record.game_id not in seen:
                seen.add(record.game_id)
                games.append(record)
    return games, skipped


def run_export(
    *,
    data_dir: Path,
    output_dir: Path,
    job_name: str,
    attempt: int,
    config: str,
    pace: Callable[[float], None],
) -> WorkloadResult:
    """Write the dataset; raises BadInputError when the config has no usable games."""
    games, skipped = load_config_games(data_dir=data_dir, config=config)
    if not games:
        where = (data_dir / GAMES_SUBDIR / config).as_posix()
        raise BadInputError(f"no {config} games to export under {where}")
    lines: list[bytes] = []
    for game in games:
        pace(1 / len(games))
        lines.extend(
            json.dumps(s, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            for s in build_samples(game)
        )
    path = dataset_path(output_dir=output_dir, config=config, job_name=job_name, attempt=attempt)
    write_atomic(path, b"".join(lines))
    note = f", skipped {skipped} malformed record(s)" if skipped else ""
    return WorkloadResult(
        kind=JobKind.EXPORT,
        samples=len(lines),
        files=[path.relative_to(data_dir).as_posix()],
        message=f"{len(lines)} samples from {len(games)} {config} games{note}",
    )
