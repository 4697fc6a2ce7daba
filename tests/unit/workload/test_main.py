"""The workload program: environment validation, flags, fault injection, termination messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ringrift_operator import cli
from ringrift_operator.api.contract import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    TERMINATION_MESSAGE_MAX_BYTES,
    Env,
    JobKind,
    WorkloadResult,
    parse_result,
)
from ringrift_operator.workload.games import derive_seed
from ringrift_operator.workload.gauntlet import WIN_RATE_OVERRIDE_ENV
from ringrift_operator.workload.main import parse_request, render_message, run

if TYPE_CHECKING:
    from conftest import Workload


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected sleep({seconds})")


def _now() -> datetime:
    return datetime(2026, 1, 2, tzinfo=UTC)


# (kind, env overrides, expected text in the message); "" removes a variable.
BAD_ENV = [
    pytest.param("selfplay", {Env.JOB_KIND: ""}, "RINGRIFT_JOB_KIND is not set", id="no-kind"),
    pytest.param("selfplay", {Env.JOB_KIND: "mining"}, "expected one of", id="unknown-kind"),
    pytest.param("selfplay", {Env.JOB_NAME: ""}, "RINGRIFT_JOB_NAME is not set", id="no-job"),
    pytest.param("selfplay", {Env.JOB_NAME: "a/b"}, "DNS label", id="job-with-slash"),
    pytest.param("selfplay", {Env.JOB_NAME: "j" * 64}, "DNS label", id="job-too-long"),
    pytest.param("selfplay", {Env.CONFIG: ""}, "RINGRIFT_CONFIG is not set", id="no-config"),
    pytest.param("selfplay", {Env.CONFIG: "chess_2p"}, "bad board config", id="bad-board"),
    pytest.param("selfplay", {Env.CONFIG: "square8_5p"}, "bad board config", id="5-players"),
    pytest.param(
        "selfplay", {Env.BOARD: "hex8"}, "RINGRIFT_BOARD='hex8' contradicts", id="board-mismatch"
    ),
    pytest.param(
        "selfplay",
        {Env.CONFIG: "", Env.BOARD: "hex8", Env.PLAYERS: "9"},
        "bad board config",
        id="board-players-out-of-range",
    ),
    pytest.param("export", {Env.DATA_DIR: ""}, "RINGRIFT_DATA_DIR is not set", id="no-data-dir"),
    pytest.param("export", {Env.OUTPUT_DIR: "../elsewhere"}, "not inside", id="output-outside"),
    pytest.param("export", {Env.ATTEMPT: "0"}, "RINGRIFT_ATTEMPT='0'", id="attempt-zero"),
    pytest.param("export", {Env.SEED: "-1"}, "RINGRIFT_SEED='-1'", id="negative-seed"),
    pytest.param("export", {Env.EPOCH: "soon"}, "RINGRIFT_EPOCH='soon'", id="epoch-not-int"),
    pytest.param("selfplay", {Env.ENGINE_MODE: ""}, "ENGINE_MODE is not set", id="no-engine"),
    pytest.param("selfplay", {Env.ENGINE_MODE: "alphabeta"}, "expected one of", id="bad-engine"),
    pytest.param("selfplay", {Env.GAMES: ""}, "RINGRIFT_GAMES is not set", id="no-games"),
    pytest.param("selfplay", {Env.GAMES: "0"}, "RINGRIFT_GAMES='0'", id="zero-games"),
    pytest.param("selfplay", {Env.GAMES: "ten"}, "RINGRIFT_GAMES='ten'", id="games-not-int"),
    pytest.param("gauntlet", {Env.MODEL_PATH: ""}, "candidate model", id="no-candidate"),
    pytest.param("gauntlet", {Env.OPPONENTS: ""}, "OPPONENTS is not set", id="no-opponents"),
    pytest.param("gauntlet", {Env.OPPONENTS: "a,,b"}, "empty entry", id="empty-opponent"),
    pytest.param(
        "gauntlet", {Env.SHARD: "2", Env.SHARDS: "2"}, "RINGRIFT_SHARD='2'", id="shard-too-big"
    ),
    pytest.param("gauntlet", {WIN_RATE_OVERRIDE_ENV: "101"}, "from 0 to 100", id="win-rate-101"),
    pytest.param(
        "training",
        {Env.WORLD_SIZE: "2", Env.NODE_RANK: "2", Env.MASTER_ADDR: "m", Env.MASTER_PORT: "1"},
        "NODE_RANK='2'",
        id="rank-outside-world",
    ),
    pytest.param(
        "training", {Env.WORLD_SIZE: "2"}, "MASTER_ADDR is not set", id="distributed-no-master"
    ),
    pytest.param(
        "training",
        {Env.WORLD_SIZE: "2", Env.MASTER_ADDR: "m", Env.MASTER_PORT: "70000"},
        "MASTER_PORT='70000'",
        id="bad-master-port",
    ),
]


class TestBadInput:
    @pytest.mark.parametrize(("kind", "overrides", "expected"), BAD_ENV)
    def test_exits_2_with_one_line_reason_and_writes_nothing(
        self, workload: Workload, kind: str, overrides: dict[str, str], expected: str
    ) -> None:
        outcome = workload.run(workload.env(kind, **overrides))
        assert outcome.code == EXIT_BAD_INPUT
        assert outcome.result is not None
        assert expected in outcome.result.message
        assert "\n" not in outcome.raw
        assert workload.files() == []

    def test_message_names_the_kind_when_known(self, workload: Workload) -> None:
        outcome = workload.run(workload.env("selfplay", **{Env.GAMES: "0"}))
        assert outcome.result is not None
        assert outcome.result.kind is JobKind.SELFPLAY

    def test_data_dir_that_is_a_file_is_bad_input(self, workload: Workload, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        outcome = workload.run(workload.env("selfplay", **{Env.DATA_DIR: str(blocker)}))
        assert outcome.code == EXIT_BAD_INPUT
        assert outcome.result is not None
        assert "is not a directory" in outcome.result.message

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param(["--exit-code", "0"], id="exit-code-0"),
            pytest.param(["--exit-code", "256"], id="exit-code-256"),
            pytest.param(["--duration-ms", "-1"], id="negative-duration"),
            pytest.param(["--kind", "mining"], id="unknown-kind-flag"),
            pytest.param(["--verbose"], id="unknown-flag"),
        ],
    )
    def test_bad_flags_exit_2(self, workload: Workload, argv: list[str]) -> None:
        outcome = workload.run(workload.env("selfplay"), *argv)
        assert outcome.code == EXIT_BAD_INPUT
        assert outcome.result is not None
        assert outcome.result.message.startswith("bad arguments:")

    def test_bad_flags_still_find_the_termination_log(self, workload: Workload) -> None:
        log = workload.log.with_name("other-log")
        code = run([f"--termination-log={log}", "--nope"], environ={}, sleep=_no_sleep, now=_now)
        assert code == EXIT_BAD_INPUT
        assert parse_result(log.read_text()) is not None


class TestFaultInjection:
    @pytest.mark.parametrize(
        ("argv", "code"),
        [
            pytest.param(["--fail"], EXIT_FAILED, id="fail"),
            pytest.param(["--exit-code", "3"], 3, id="exit-code-3"),
            pytest.param(["--fail", "--exit-code", "137"], 137, id="exit-code-wins"),
        ],
    )
    def test_fails_without_writing_outputs(
        self, workload: Workload, argv: list[str], code: int
    ) -> None:
        outcome = workload.run(workload.env("selfplay"), *argv)
        assert outcome.code == code
        assert outcome.result is not None
        assert outcome.result.kind is JobKind.SELFPLAY
        assert outcome.result.message == f"injected failure (exit code {code})"
        assert workload.files() == []

    def test_failure_takes_the_requested_time(self, workload: Workload) -> None:
        outcome = workload.run(workload.env("export"), "--fail", "--duration-ms", "1500")
        assert outcome.sleeps == [1.5]

    def test_bad_input_wins_over_injected_failure(self, workload: Workload) -> None:
        outcome = workload.run(workload.env("selfplay", **{Env.GAMES: "x"}), "--fail")
        assert outcome.code == EXIT_BAD_INPUT


class TestUnexpectedErrors:
    def test_become_exit_1_with_a_one_line_message(
        self, workload: Workload, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (workload.data_dir / "games").write_text("a file where a directory should be")
        outcome = workload.run(workload.env("selfplay"))
        assert outcome.code == EXIT_FAILED
        assert outcome.result is not None
        assert outcome.result.message.split(":")[0] in {"FileExistsError", "NotADirectoryError"}
        assert "Traceback" not in capsys.readouterr().err

    def test_unwritable_termination_log_does_not_change_the_exit_code(
        self, workload: Workload, capsys: pytest.CaptureFixture[str]
    ) -> None:
        log = workload.data_dir / "missing-dir" / "log"
        env = workload.env("selfplay")
        code = run(["--termination-log", str(log)], environ=env, sleep=_no_sleep, now=_now)
        assert code == EXIT_OK
        assert "cannot write termination log" in capsys.readouterr().err


class TestEnvironment:
    def test_kind_flag_overrides_the_environment(self, workload: Workload) -> None:
        outcome = workload.run(
            workload.env("selfplay", **{Env.JOB_KIND: "export"}), "--kind", "selfplay"
        )
        assert outcome.code == EXIT_OK
        assert outcome.result is not None
        assert outcome.result.kind is JobKind.SELFPLAY

    def test_config_from_board_and_players(self, workload: Workload) -> None:
        env = workload.env("selfplay", **{Env.CONFIG: "", Env.BOARD: "hex8", Env.PLAYERS: "3"})
        request = parse_request(env)
        assert request.config == "hex8_3p"

    def test_defaults(self, workload: Workload) -> None:
        env = workload.env("export", **{Env.ATTEMPT: "", Env.SEED: "", Env.EPOCH: ""})
        request = parse_request(env)
        assert request.attempt == 1
        assert request.epoch == 0
        assert request.seed == derive_seed("job-1", 1)
        assert request.output_dir == request.data_dir == workload.data_dir.resolve()

    def test_relative_output_dir_is_under_the_data_dir(self, workload: Workload) -> None:
        request = parse_request(workload.env("export", **{Env.OUTPUT_DIR: "out/a1"}))
        assert request.output_dir == workload.data_dir.resolve() / "out" / "a1"


class TestTerminationMessage:
    def test_stays_within_the_kubelet_limit(self) -> None:
        result = WorkloadResult(
            kind=JobKind.SELFPLAY,
            games_written=10**6,
            files=[f"games/square19_4p/{'x' * 60}-a1-{n}.jsonl" for n in range(500)],
            message="line one\nline two " + "y" * 5000,
        )
        text = render_message(result)
        assert len(text.encode()) <= TERMINATION_MESSAGE_MAX_BYTES
        parsed = parse_result(text)
        assert parsed is not None
        assert parsed.games_written == 10**6
        assert "\n" not in text

    def test_message_is_collapsed_to_one_line(self) -> None:
        text = render_message(WorkloadResult(message="a\n  b\tc"))
        assert json.loads(text)["message"] == "a b c"


class TestCli:
    def test_cli_dispatches_to_the_workload(
        self, workload: Workload, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in workload.env("selfplay").items():
            monkeypatch.setenv(name, value)
        assert cli.main(["workload", "--termination-log", str(workload.log)]) == EXIT_OK
        result = parse_result(workload.log.read_text())
        assert result is not None
        assert result.games_written == 5


def test_the_whole_loop_selfplay_export_training_gauntlet(workload: Workload) -> None:
    selfplay = workload.run(workload.env("selfplay", **{Env.GAMES: "12"}))
    export = workload.run(workload.env("export", **{Env.JOB_NAME: "export-1"}))
    training = workload.run(workload.env("training", **{Env.JOB_NAME: "train-1"}))
    assert training.result is not None
    assert training.result.model is not None
    candidate = training.result.files[0]
    gauntlet = workload.run(
        workload.env("gauntlet", **{Env.MODEL_PATH: candidate, WIN_RATE_OVERRIDE_ENV: "75"})
    )
    assert [o.code for o in (selfplay, export, training, gauntlet)] == [EXIT_OK] * 4
    assert gauntlet.result is not None
    assert (gauntlet.result.wins, gauntlet.result.losses) == (15, 5)
    assert workload.files() == [
        "games/square8_2p/job-1-a1-0.jsonl",
        "models/square8_2p/train-1-a1-g1.pt",
        "training/square8_2p/export-1-a1.jsonl",
    ]
