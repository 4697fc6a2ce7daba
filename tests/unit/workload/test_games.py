"""Game records and data-file helpers: well-formed records, strict parsing, atomic files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringrift_operator.api.common import Board, EngineMode, config_key
from ringrift_operator.workload.games import (
    GameRecord,
    board_cells,
    build_game,
    derive_seed,
    encode_games,
    list_data_files,
    parse_game,
    read_games,
    temp_path,
    write_atomic,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _game(*, board: Board = Board.SQUARE8, players: int = 2, seed: int = 1) -> GameRecord:
    return build_game(
        game_id=f"g-{seed}",
        board=board,
        players=players,
        engine_mode=EngineMode.GUMBEL_MCTS,
        model="models/square8_2p/m-g1.pt",
        seed=seed,
        created_at=NOW,
    )


def _wire(game: GameRecord) -> dict[str, object]:
    value = json.loads(encode_games([game]))
    assert isinstance(value, dict)
    return value


class TestBuildGame:
    @pytest.mark.parametrize("board", list(Board), ids=str)
    @pytest.mark.parametrize("players", [2, 3, 4], ids=lambda p: f"{p}p")
    def test_round_trips_as_a_valid_record(self, board: Board, players: int) -> None:
        game = _game(board=board, players=players)
        parsed = parse_game(encode_games([game]).decode())
        assert parsed == game
        assert parsed.config == config_key(board, players)
        assert parsed.length == len(parsed.moves) > 0
        assert {m.player for m in parsed.moves} == set(range(players))
        cells = set(board_cells(board))
        assert all(m.to in cells and (m.from_ is None or m.from_ in cells) for m in parsed.moves)

    def test_same_seed_same_game_and_other_seeds_differ(self) -> None:
        assert encode_games([_game(seed=7)]) == encode_games([_game(seed=7)])
        assert len({encode_games([_game(seed=s)]) for s in range(5)}) == 5

    def test_wire_names_are_camel_case_and_defaults_are_left_out(self) -> None:
        wire = _wire(_game())
        assert {"schema", "gameId", "engineMode", "createdAt", "winner", "model"} <= set(wire)
        moves = wire["moves"]
        assert isinstance(moves, list)
        placement = moves[0]
        assert placement["type"] == "place_ring"
        assert "from" not in placement
        assert "captured" not in placement

    @pytest.mark.parametrize(
        ("board", "cells"),
        [(Board.SQUARE8, 64), (Board.SQUARE19, 361), (Board.HEX8, 61), (Board.HEXAGONAL, 469)],
        ids=str,
    )
    def test_board_cells(self, board: Board, cells: int) -> None:
        assert len(set(board_cells(board))) == cells


def _broken(change: str) -> str:
    wire = _wire(_game())
    moves = wire["moves"]
    assert isinstance(moves, list)
    match change:
        case "length":
            wire["length"] = len(moves) + 1
        case "winner":
            wire["winner"] = 2
        case "config":
            wire["config"] = "square8_3p"
        case "cell":
            moves[0]["to"] = "z99"
        case "ply":
            moves[1]["ply"] = 5
        case "extra-key":
            wire["elo"] = 1500
        case "schema":
            wire["schema"] = "something/v9"
        case "no-moves":
            wire["moves"], wire["length"] = [], 0
    return json.dumps(wire)


class TestParseGame:
    @pytest.mark.parametrize(
        "change",
        ["length", "winner", "config", "cell", "ply", "extra-key", "schema", "no-moves"],
    )
    def test_rejects_inconsistent_records(self, change: str) -> None:
        with pytest.raises(ValueError, match="malformed game record"):
            parse_game(_broken(change))

    @pytest.mark.parametrize("line", ["not json", "[]", "{}", '{"gameId": "x"}'])
    def test_rejects_non_records(self, line: str) -> None:
        with pytest.raises(ValueError, match="malformed game record"):
            parse_game(line)

    def test_read_games_keeps_valid_lines_and_counts_the_rest(self, tmp_path: Path) -> None:
        path = tmp_path / "g.jsonl"
        good = encode_games([_game(seed=1), _game(seed=2)]).decode().splitlines()
        path.write_text("\n".join([good[0], "garbage", "", _broken("ply"), good[1]]) + "\n")
        records, malformed = read_games(path)
        assert [r.game_id for r in records] == ["g-1", "g-2"]
        assert malformed == 2


class TestFiles:
    def test_write_atomic_creates_and_replaces_without_leftovers(self, tmp_path: Path) -> None:
        path = tmp_path / "games" / "square8_2p" / "job-a1-0.jsonl"
        write_atomic(path, b"one\n")
        write_atomic(path, b"two\n")
        assert path.read_bytes() == b"two\n"
        assert [p.name for p in path.parent.iterdir()] == [path.name]

    def test_temp_name_is_hidden_and_never_listed(self, tmp_path: Path) -> None:
        final = tmp_path / "b.jsonl"
        tmp = temp_path(final)
        assert tmp.parent == final.parent
        assert tmp.name.startswith(".")
        assert not tmp.name.endswith(".jsonl")
        for name in ["b.jsonl", "a.jsonl", tmp.name, ".hidden.jsonl", "notes.txt"]:
            (tmp_path / name).write_text("x")
        (tmp_path / "dir.jsonl").mkdir()
        assert [p.name for p in list_data_files(tmp_path)] == ["a.jsonl", "b.jsonl"]
        assert list_data_files(tmp_path / "missing") == []

    def test_derive_seed_is_stable_and_63_bit(self) -> None:
        assert derive_seed("job", 1) == derive_seed("job", 1)
        assert derive_seed("job", 1) != derive_seed("job", 2)
        assert all(0 <= derive_seed(i) < 2**63 for i in range(100))
