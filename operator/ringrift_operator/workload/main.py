"""``ringrift-operator workload``: the sample workload, a small program honouring the contract.

Reads the contract's environment (``api.contract.Env``), runs one job kind (``selfplay``,
``export``, ``training``, ``gauntlet``) against the node's data directory, writes one JSON line to
the termination log and exits 0 (ok), 2 (bad input: not retried) or anything else (failed).
Never prints a traceback: every failure becomes a one-line message. Used as the image command to
smoke-test an install and by the sandbox's workload simulator. See docs/workload-contract.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from ringrift_operator.api.common import Board, EngineMode, config_key, parse_config_key
from ringrift_operator.api.contract import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    TERMINATION_MESSAGE_MAX_BYTES,
    TERMINATION_MESSAGE_PATH,
    Env,
    JobKind,
    WorkloadResult,
)
from ringrift_operator.workload.export import run_export
from ringrift_operator.workload.games import BadInputError, derive_seed
from ringrift_operator.workload.gauntlet import WIN_RATE_OVERRIDE_ENV, run_gauntlet
from ringrift_operator.workload.selfplay import run_selfplay
from ringrift_operator.workload.training import run_training

PROG = "ringrift-operator workload"
MAX_GAMES = 100_000
MAX_SEED = 2**63 - 1
MAX_MESSAGE_CHARS = 512
_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="The sample workload: fake but well-formed games, datasets, models and "
        "gauntlet results, honouring the workload contract (docs/workload-contract.md).",
    )
    parser.add_argument(
        "--termination-log",
        default=TERMINATION_MESSAGE_PATH,
        metavar="PATH",
        help=f"where to write the result JSON (default {TERMINATION_MESSAGE_PATH})",
    )
    parser.add_argument(
        "--kind", choices=[k.value for k in JobKind], help=f"job kind, overrides {Env.JOB_KIND}"
    )
    parser.add_argument(
        "--fail", action="store_true", help=f"fault injection: do no work, exit {EXIT_FAILED}"
    )
    parser.add_argument(
        "--exit-code",
        type=_exit_code,
        default=None,
        metavar="N",
        help="fault injection: do no work, exit N (1-255)",
    )
    parser.add_argument(
        "--duration-ms",
        type=_non_negative,
        default=0,
        metavar="MS",
        help="spread the work over about this many milliseconds (default 0)",
    )
    return parser


def _exit_code(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 255, got {text!r}")
    return int(text)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadRequest:
    """Everything a run needs, parsed and validated from the environment."""

    kind: JobKind
    job_name: str
    board: Board
    players: int
    data_dir: Path
    output_dir: Path
    attempt: int
    epoch: int
    seed: int
    model_path: str
    engine_mode: EngineMode = EngineMode.RANDOM  # selfplay only
    games: int = 0  # selfplay and gauntlet only
    opponents: tuple[str, ...] = ()  # gauntlet only
    shard: int = 0
    shards: int = 1
    world_size: int = 1  # training only
    node_rank: int = 0  # training only
    win_rate_percent: int | None = None  # gauntlet only, sample workload only

    @property
    def config(self) -> str:
        return config_key(self.board, self.players)


def _get(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _require(environ: Mapping[str, str], name: str, *, why: str = "") -> str:
    value = _get(environ, name)
    if not value:
        raise BadInputError(f"{name} is not set{why}")
    return value


def _int(
    environ: Mapping[str, str],
    name: str,
    *,
    default: int | None,
    minimum: int,
    maximum: int,
    why: str = "",
) -> int:
    raw = _get(environ, name)
    if not raw:
        if default is None:
            raise BadInputError(f"{name} is not set{why}")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise BadInputError(f"{name}={raw!r}: expected an integer from {minimum} to {maximum}")
    return value


def _parse_config(environ: Mapping[str, str]) -> tuple[Board, int]:
    key = _get(environ, Env.CONFIG)
    board_raw, players_raw = _get(environ, Env.BOARD), _get(environ, Env.PLAYERS)
    try:
        if key:
            board, players = parse_config_key(key)
        elif board_raw and players_raw:
            board, players = Board(board_raw), int(players_raw)
            key = config_key(board, players)
            parse_config_key(key)  # range check of players
        else:
            raise BadInputError(f"{Env.CONFIG} is not set (nor {Env.BOARD} and {Env.PLAYERS})")
    except ValueError as exc:
        boards = ", ".join(b.value for b in Board)
        raise BadInputError(
            f"bad board config {key or board_raw!r}: {exc} (boards: {boards})"
        ) from exc
    if board_raw and board_raw != board.value:
        raise BadInputError(f"{Env.BOARD}={board_raw!r} contradicts {Env.CONFIG}={key!r}")
    if players_raw and players_raw != str(players):
        raise BadInputError(f"{Env.PLAYERS}={players_raw!r} contradicts {Env.CONFIG}={key!r}")
    return board, players


def _parse_dirs(environ: Mapping[str, str]) -> tuple[Path, Path]:
    data_dir = Path(_require(environ, Env.DATA_DIR)).absolute()
    raw_output = _get(environ, Env.OUTPUT_DIR)
    output_dir = (data_dir / raw_output).resolve() if raw_output else data_dir.resolve()
    data_dir = data_dir.resolve()
    if not output_dir.is_relative_to(data_dir):
        raise BadInputError(f"{Env.OUTPUT_DIR}={raw_output!r} is not inside {Env.DATA_DIR}")
    return data_dir, output_dir


def parse_request(environ: Mapping[str, str], *, kind: str | None = None) -> WorkloadRequest:
    """Validate the environment for one job kind; raises BadInputError with a one-line reason."""
    kind_raw = kind or _require(environ, Env.JOB_KIND, why=" (or pass --kind)")
    try:
        job_kind = JobKind(kind_raw)
    except ValueError:
        kinds = ", ".join(k.value for k in JobKind)
        raise BadInputError(f"{Env.JOB_KIND}={kind_raw!r}: expected one of {kinds}") from None
    job_name = _require(environ, Env.JOB_NAME)
    if not _JOB_NAME.match(job_name):
        raise BadInputError(f"{Env.JOB_NAME}={job_name!r}: expected a DNS label (a-z, 0-9, -, .)")
    board, players = _parse_config(environ)
    data_dir, output_dir = _parse_dirs(environ)
    attempt = _int(environ, Env.ATTEMPT, default=1, minimum=1, maximum=10_000)
    seed_default = derive_seed(job_name, attempt)
    base = WorkloadRequest(
        kind=job_kind,
        job_name=job_name,
        board=board,
        players=players,
        data_dir=data_dir,
        output_dir=output_dir,
        attempt=attempt,
        epoch=_int(environ, Env.EPOCH, default=0, minimum=0, maximum=MAX_SEED),
        seed=_int(environ, Env.SEED, default=seed_default, minimum=0, maximum=MAX_SEED),
        model_path=_get(environ, Env.MODEL_PATH),
    )
    match job_kind:
        case JobKind.SELFPLAY:
            return replace(
                base,
                engine_mode=_parse_engine_mode(environ),
                games=_int(environ, Env.GAMES, default=None, minimum=1, maximum=MAX_GAMES),
            )
        case JobKind.GAUNTLET:
            return _parse_gauntlet(environ, base)
        case JobKind.TRAINING:
            world_size = _int(environ, Env.WORLD_SIZE, default=1, minimum=1, maximum=10_000)
            node_rank = _int(environ, Env.NODE_RANK, default=0, minimum=0, maximum=world_size - 1)
            if world_size > 1:
                why = f" (required when {Env.WORLD_SIZE} > 1)"
                _require(environ, Env.MASTER_ADDR, why=why)
                _int(environ, Env.MASTER_PORT, default=None, minimum=1, maximum=65535, why=why)
            return replace(base, world_size=world_size, node_rank=node_rank)
        case JobKind.EXPORT:
            return base


def _parse_engine_mode(environ: Mapping[str, str]) -> EngineMode:
    raw = _require(environ, Env.ENGINE_MODE)
    try:
        return EngineMode(raw)
    except ValueError:
        modes = ", ".join(m.value for m in EngineMode)
        raise BadInputError(f"{Env.ENGINE_MODE}={raw!r}: expected one of {modes}") from None


def _parse_gauntlet(environ: Mapping[str, str], base: WorkloadRequest) -> WorkloadRequest:
    games = _int(environ, Env.GAMES, default=None, minimum=1, maximum=MAX_GAMES)
    if not base.model_path:
        raise BadInputError(f"{Env.MODEL_PATH} is not set (the candidate model)")
    raw_opponents = _require(environ, Env.OPPONENTS)
    opponents = tuple(o.strip() for o in raw_opponents.split(","))
    if not all(opponents):
        raise BadInputError(f"{Env.OPPONENTS}={raw_opponents!r} has an empty entry")
    shards = _int(environ, Env.SHARDS, default=1, minimum=1, maximum=10_000)
    shard = _int(environ, Env.SHARD, default=0, minimum=0, maximum=shards - 1)
    win_rate = (
        _int(environ, WIN_RATE_OVERRIDE_ENV, default=None, minimum=0, maximum=100)
        if _get(environ, WIN_RATE_OVERRIDE_ENV)
        else None
    )
    return replace(
        base,
        games=games,
        opponents=opponents,
        shard=shard,
        shards=shards,
        win_rate_percent=win_rate,
    )


def execute(
    request: WorkloadRequest,
    *,
    now: Callable[[], datetime],
    pace: Callable[[float], None],
) -> WorkloadResult:
    """Run the job kind the request names."""
    if request.data_dir.exists() and not request.data_dir.is_dir():
        raise BadInputError(f"{Env.DATA_DIR}={request.data_dir.as_posix()!r} is not a directory")
    request.output_dir.mkdir(parents=True, exist_ok=True)
    match request.kind:
        case JobKind.SELFPLAY:
            return run_selfplay(
                data_dir=request.data_dir,
                output_dir=request.output_dir,
                job_name=request.job_name,
                attempt=request.attempt,
                board=request.board,
                players=request.players,
                engine_mode=request.engine_mode,
                games=request.games,
                model=request.model_path or None,
                seed=request.seed,
                now=now,
                pace=pace,
            )
        case JobKind.EXPORT:
            return run_export(
                data_dir=request.data_dir,
                output_dir=request.output_dir,
                job_name=request.job_name,
                attempt=request.attempt,
                config=request.config,
                pace=pace,
            )
        case JobKind.TRAINING:
            return run_training(
                data_dir=request.data_dir,
                output_dir=request.output_dir,
                job_name=request.job_name,
                attempt=request.attempt,
                config=request.config,
                parent_model=request.model_path,
                world_size=request.world_size,
                node_rank=request.node_rank,
                pace=pace,
            )
        case JobKind.GAUNTLET:
            return run_gauntlet(
                data_dir=request.data_dir,
                games=request.games,
                model_path=request.model_path,
                opponents=request.opponents,
                seed=request.seed,
                shard=request.shard,
                win_rate_percent=request.win_rate_percent,
                pace=pace,
            )


def one_line(text: str, *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Collapse whitespace (no newlines in a termination message) and cut to ``limit``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_message(result: WorkloadResult) -> str:
    """The termination message: contract JSON, one line, never over the kubelet's limit."""
    text = result.model_copy(update={"message": one_line(result.message)}).to_message()
    if len(text.encode()) > TERMINATION_MESSAGE_MAX_BYTES:
        text = result.model_copy(update={"files": [], "message": ""}).to_message()
    return text


def write_termination_log(path: str, text: str) -> None:
    """Best effort: a missing or read-only termination log must not hide the exit code."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write termination log {path}: {exc}", file=sys.stderr)


def _termination_log_from(argv: Sequence[str]) -> str:
    """Find --termination-log in arguments that failed to parse."""
    for index, arg in enumerate(argv):
        if arg.startswith("--termination-log="):
            return arg.split("=", 1)[1]
        if arg == "--termination-log" and index + 1 < len(argv):
            return argv[index + 1]
    return TERMINATION_MESSAGE_PATH


def _finish(path: str, result: WorkloadResult, code: int) -> int:
    text = render_message(result)
    write_termination_log(path, text)
    stream = sys.stdout if code == EXIT_OK else sys.stderr
    print(text, file=stream)
    return code


def run(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str],
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
) -> int:
    """The whole program with its world passed in: flags, environment, clock and sleep."""
    try:
        args = build_parser().parse_args(list(argv))
    except _UsageError as exc:
        result = WorkloadResult(message=f"bad arguments: {exc}")
        return _finish(_termination_log_from(argv), result, EXIT_BAD_INPUT)
    log: str = args.termination_log
    seconds = args.duration_ms / 1000

    def pace(fraction: float) -> None:
        if seconds > 0 and fraction > 0:
            sleep(seconds * fraction)

    kind_hint = args.kind or _get(environ, Env.JOB_KIND)
    kind = JobKind(kind_hint) if kind_hint in set(JobKind) else None
    try:
        request = parse_request(environ, kind=args.kind)
        if args.fail or args.exit_code is not None:
            pace(1.0)
            code: int = args.exit_code if args.exit_code is not None else EXIT_FAILED
            message = f"injected failure (exit code {code})"
            return _finish(log, WorkloadResult(kind=kind, message=message), code)
        result = execute(request, now=now, pace=pace)
    except BadInputError as exc:
        return _finish(log, WorkloadResult(kind=kind, message=str(exc)), EXIT_BAD_INPUT)
    except Exception as exc:  # the contract promises a message, never a traceback
        message = f"{type(exc).__name__}: {exc}"
        return _finish(log, WorkloadResult(kind=kind, message=message), EXIT_FAILED)
    return _finish(log, result, EXIT_OK)


def main(argv: list[str]) -> int:
    """Entry point of ``ringrift-operator workload`` (see ``cli.py``)."""
    return run(argv, environ=os.environ, sleep=time.sleep, now=lambda: datetime.now(UTC))
