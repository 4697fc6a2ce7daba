"""Self-play job of the sample workload: write N fake games for one board config.

Games go to ``<output>/games/<config>/<job>-a<attempt>-<n>.jsonl`` in files of at most
``GAMES_PER_FILE`` games, each written atomically. The records depend only on the seed, the job
name and the attempt (plus the clock for ``createdAt``). Called by ``workload.main``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ringrift_operator.api.common import Board, EngineMode, config_key
from ringrift_operator.api.contract import GAMES_SUBDIR, JobKind, WorkloadResult
from ringrift_operator.workload.games import (
    DATA_SUFFIX,
    GameRecord,
    attempt_stem,
    build_game,
    derive_seed,
    encode_games,
    write_atomic,
)

GAMES_PER_FILE = 500


def games_file_path(
    *, output_dir: Path, config: str, job_name: str, attempt: int, index: int
) -> Path:
    """Where the ``index``-th games file of one attempt goes."""
    stem = attempt_stem(job_name=job_name, attempt=attempt)
    return output_dir / GAMES_SUBDIR / config / f"{stem}-{index}{DATA_SUFFIX}"


def run_selfplay(
    *,
    data_dir: Path,
    output_dir: Path,
    job_name: str,
    attempt: int,
    board: Board,
    players: int,
    engine_mode: EngineMode,
    games: int,
    model: str | None,
    seed: int,
    now: Callable[[], datetime],
    pace: Callable[[float], None],
) -> WorkloadResult:
    """Play ``games`` games and write them; ``pace(f)`` spends fraction ``f`` of the run time."""
    config = config_key(board, players)
    stem = attempt_stem(job_name=job_name, attempt=attempt)
    files: list[str] = []
    batch: list[GameRecord] = []
    for number in range(games):
        pace(1 / games)
        batch.append(
            build_game(
                game_id=f"{stem}-{number:06d}",
                board=board,
                players=players,
                engine_mode=engine_mode,
                model=model,
                seed=derive_seed(seed, number),
                created_at=now(),
            )
        )
        if len(batch) == GAMES_PER_FILE or number == games - 1:
            path = games_file_path(
                output_dir=output_dir,
                config=config,
                job_name=job_name,
                attempt=attempt,
                index=len(files),
            )
            write_atomic(path, encode_games(batch))
            files.append(path.relative_to(data_dir).as_posix())
            batch = []
    return WorkloadResult(
        kind=JobKind.SELFPLAY,
        games_written=games,
        files=files,
        message=f"{games} {config} games with {engine_mode.value}",
    )
