"""Export: one sample per move of every usable game of the config; no games is bad input."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

from ringrift_operator.api.contract import EXIT_BAD_INPUT, EXIT_OK, Env, JobKind
from ringrift_operator.workload.export import SAMPLE_KEYS
from ringrift_operator.workload.games import read_games

if TYPE_CHECKING:
    from conftest import Workload

GAMES = "games/square8_2p/job-1-a1-0.jsonl"
DATASET = "training/square8_2p/export-1-a1.jsonl"


def _export(workload: Workload, **overrides: str) -> tuple[int, list[dict[str, object]]]:
    outcome = workload.run(workload.env("export", **{Env.JOB_NAME: "export-1", **overrides}))
    path = workload.data_dir / DATASET
    lines = path.read_text().splitlines() if path.exists() else []
    return outcome.code, [json.loads(line) for line in lines]


def test_one_sample_per_move(workload: Workload) -> None:
    workload.run(workload.env("selfplay"))
    games, _ = read_games(workload.data_dir / GAMES)
    outcome = workload.run(workload.env("export", **{Env.JOB_NAME: "export-1"}))
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert outcome.result.kind is JobKind.EXPORT
    assert outcome.result.files == [DATASET]
    assert outcome.result.samples == sum(g.length for g in games)
    samples = [json.loads(x) for x in (workload.data_dir / DATASET).read_text().splitlines()]
    assert len(samples) == outcome.result.samples
    assert all(set(s) == set(SAMPLE_KEYS) for s in samples)
    assert {s["value"] for s in samples} <= {-1, 0, 1}


def test_no_games_is_bad_input(workload: Workload) -> None:
    outcome = workload.run(workload.env("export"))
    assert outcome.code == EXIT_BAD_INPUT
    assert outcome.result is not None
    assert outcome.result.message.startswith("no square8_2p games to export under ")
    assert workload.files() == []


def test_only_malformed_games_is_bad_input(workload: Workload) -> None:
    path = workload.data_dir / GAMES
    path.parent.mkdir(parents=True)
    path.write_text("{}\nnot json\n")
    assert _export(workload)[0] == EXIT_BAD_INPUT


def test_skips_malformed_records_in_progress_files_and_duplicates(workload: Workload) -> None:
    workload.run(workload.env("selfplay"))
    _, clean = _export(workload)
    directory = workload.data_dir / "games/square8_2p"
    shutil.copy(directory / "job-1-a1-0.jsonl", directory / "copy-from-peer.jsonl")
    shutil.copy(directory / "job-1-a1-0.jsonl", directory / ".job-9-a1-0.jsonl.123.tmp")
    with (directory / "job-1-a1-0.jsonl").open("a") as handle:
        handle.write("half a rec")
    outcome = workload.run(workload.env("export", **{Env.JOB_NAME: "export-1"}))
    assert outcome.code == EXIT_OK
    assert outcome.result is not None
    assert "skipped 1 malformed record" in outcome.result.message
    assert outcome.result.samples == len(clean)


def test_other_configs_are_not_exported(workload: Workload) -> None:
    workload.run(workload.env("selfplay", **{Env.CONFIG: "hex8_2p"}))
    assert _export(workload)[0] == EXIT_BAD_INPUT
    workload.run(workload.env("selfplay"))
    code, samples = _export(workload)
    assert code == EXIT_OK
    assert {str(s["gameId"]).rsplit("-", 1)[0] for s in samples} == {"job-1-a1"}


def test_same_games_same_dataset(workload: Workload) -> None:
    workload.run(workload.env("selfplay"))
    first = workload.run(workload.env("export", **{Env.JOB_NAME: "e1"}))
    second = workload.run(workload.env("export", **{Env.JOB_NAME: "e2"}))
    assert first.result is not None
    assert second.result is not None
    a, b = (workload.data_dir / r.files[0] for r in (first.result, second.result))
    assert a.read_bytes() == b.read_bytes()
