"""Fixtures for the sample workload's tests: run the program in-process against ``tmp_path``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringrift_operator.api.contract import Env, WorkloadResult, parse_result
from ringrift_operator.workload.main import run

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

_KIND_ENV: dict[str, dict[str, str]] = {
    "selfplay": {Env.ENGINE_MODE: "heuristic", Env.GAMES: "5"},
    "export": {},
    "training": {},
    "gauntlet": {
        Env.GAMES: "20",
        Env.MODEL_PATH: "models/square8_2p/cand-a1-g2.pt",
        Env.OPPONENTS: "heuristic,best",
    },
}


@dataclass
class Outcome:
    """What one run of the workload left behind."""

    code: int
    raw: str
    result: WorkloadResult | None
    sleeps: list[float] = field(default_factory=list)


@dataclass
class Workload:
    """Runs the sample workload with a fake clock and a recording sleep."""

    data_dir: Path
    log: Path

    def env(self, kind: str, **overrides: str) -> dict[str, str]:
        """A valid environment for ``kind``; overrides by Env value, "" removes a variable."""
        env = {
            Env.JOB_KIND: kind,
            Env.JOB_NAME: "job-1",
            Env.CONFIG: "square8_2p",
            Env.DATA_DIR: str(self.data_dir),
            Env.ATTEMPT: "1",
            Env.SEED: "42",
            Env.EPOCH: "3",
            **_KIND_ENV[kind],
            **overrides,
        }
        return {k: v for k, v in env.items() if v != ""}

    def run(self, env: dict[str, str], *argv: str) -> Outcome:
        sleeps: list[float] = []
        args = ["--termination-log", str(self.log), *argv]
        code = run(args, environ=env, sleep=sleeps.append, now=lambda: FIXED_NOW)
        raw = self.log.read_text(encoding="utf-8") if self.log.exists() else ""
        return Outcome(code=code, raw=raw, result=parse_result(raw), sleeps=sleeps)

    def files(self) -> list[str]:
        """Every file under the data directory, relative, sorted."""
        return sorted(
            p.relative_to(self.data_dir).as_posix() for p in self.data_dir.rglob("*") if p.is_file()
        )


@pytest.fixture
def workload(tmp_path: Path) -> Workload:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Workload(data_dir=data_dir, log=tmp_path / "termination-log")
