"""The plugin's text output (kubectl-style tables), its command line and the Elo plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ringrift_operator.plugin import main, render, tables
from ringrift_operator.plugin.fetch import PluginError
from ringrift_operator.plugin.plot import MISSING, group_series, plot_elo


def test_a_table_aligns_columns_like_kubectl() -> None:
    text = tables.format_table(["name", "gpus", "why"], [["h100-0", 8, ""], ["a", 10, "x y"]])
    assert text.splitlines() == [
        "NAME     GPUS   WHY",
        "h100-0   8      <none>",
        "a        10     x y",
    ]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells, 3 headers"):
        tables.format_table(["a", "b", "c"], [[1, 2]])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "<none>"),
        ("", "<none>"),
        (True, "true"),
        (3, "3"),
        (2.0, "2"),
        (1.25, "1.25"),
        (0.5, "0.5"),
    ],
)
def test_cells(value: object, text: str) -> None:
    assert tables.cell(value) == text


def test_pairs_align_their_values() -> None:
    assert tables.format_pairs([("Leader", "op-1"), ("Epoch", 3)]).splitlines() == [
        "Leader:   op-1",
        "Epoch:    3",
    ]


STATUS = {
    "leadership": {"lease": "ringrift-system/ringrift-operator", "leader": "op-1", "epoch": 2,
                   "expired": False, "renewedAgo": 1.5, "durationSeconds": 15},
    "selfplayJobs": {"Pending": 0, "Running": 2, "Complete": 5},
    "trainingRuns": {"Pending": 1},
    "gpus": {"nodes": 3, "readyNodes": 3, "gpuNodes": 2, "total": 12, "busy": 2, "idle": 10,
             "operatorPods": 2},
    "training": [{"config": "square8_2p", "gamesProduced": 120, "trainingRun": "ns/tr",
                  "phase": "Pending", "dataReady": "False", "reason": "NotEnoughGames",
                  "message": "120/500 new games"}],
    "sync": {"missingFiles": 4, "plans": [{"syncPlan": "ns/sp", "state": "Syncing",
                                           "missingFiles": 4, "filesSynced": 9,
                                           "lastSyncTime": None}]},
}  # fmt: skip


def test_status_text_has_the_loop_at_a_glance() -> None:
    text = render.render_status(STATUS)
    assert "Leader:" in text
    assert "op-1 (renewed 1.5s ago, lease ringrift-system/ringrift-operator)" in text
    assert "Epoch:" in text
    assert "Running 2, Complete 5" in text  # zero phases are left out
    assert "2 busy, 10 idle of 12 on 2 GPU nodes" in text
    assert "4 file(s) missing" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("CONFIG"))
    assert header.split() == ["CONFIG", "GAMES", "TRAININGRUN", "PHASE", "DATAREADY", "REASON",
                              "MESSAGE"]  # fmt: skip
    assert any(line.startswith("square8_2p") and "NotEnoughGames" in line for line in lines)


def test_status_without_a_lease_says_so() -> None:
    view = STATUS | {"leadership": {"lease": None, "leader": None, "epoch": None,
                                    "expired": True, "renewedAgo": None}}  # fmt: skip
    assert "no operator Lease found" in render.render_status(view)


def test_elo_without_points_explains_itself() -> None:
    assert "No evaluated models yet" in render.render_elo([])


POINTS = [
    {"config": "square8_2p", "generation": 2, "rating": 1570.0, "eloDelta": -30,
     "promoted": False, "trainingRun": "ns/b"},
    {"config": "square8_2p", "generation": 1, "rating": 1600.0, "eloDelta": 100,
     "promoted": True, "trainingRun": "ns/a"},
    {"config": "hex8_2p", "generation": 1, "rating": 1520.0, "eloDelta": 20, "promoted": True,
     "trainingRun": "ns/c"},
]  # fmt: skip


def test_series_are_grouped_by_config_in_generation_order() -> None:
    series = group_series(POINTS)
    assert [p["generation"] for p in series["square8_2p"]] == [1, 2]
    assert list(series) == ["square8_2p", "hex8_2p"]


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    out = plot_elo(POINTS, tmp_path / "sub" / "elo.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000  # axes, lines and a legend, not an empty canvas


def test_without_matplotlib_the_plot_fails_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(PluginError, match=r"pip install 'ringrift-operator\[bench\]'") as e:
        plot_elo(POINTS, tmp_path / "elo.png")
    assert str(e.value) == MISSING
    assert not (tmp_path / "elo.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["-n", "ns", "--kubeconfig", "k", "-o", "json", "status"], id="before"),
        pytest.param(["status", "-n", "ns", "--kubeconfig", "k", "-o", "json"], id="after"),
        pytest.param(["-n", "ns", "status", "--kubeconfig", "k", "--output=json"], id="mixed"),
    ],
)
def test_global_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    args = main.build_parser().parse_args(argv)
    assert (args.command, args.namespace, args.kubeconfig, args.output) == (
        "status", "ns", "k", "json")  # fmt: skip


def test_explain_needs_a_name_and_elo_takes_a_plot_file() -> None:
    parser = main.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["explain"])
    args = parser.parse_args(["elo", "--plot", "x.png"])
    assert (args.plot, args.history, args.output) == ("x.png", None, "table")


def test_a_missing_kubeconfig_is_an_error_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main.main(["nodes", "--kubeconfig", str(tmp_path / "absent")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load the kubeconfig")
    assert "Traceback" not in err


def test_elo_from_a_missing_history_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["elo", "--history", str(tmp_path / "none.db")]) == 1
    assert "no history store at" in capsys.readouterr().err


async def test_elo_reads_the_history_store(tmp_path: Path) -> None:
    from ringrift_operator.plugin.fetch import load_history_elo
    from ringrift_operator.state.history import HistoryStore
    from ringrift_operator.state.rows import EloRating, ModelRecord

    path = tmp_path / "history.db"
    async with HistoryStore.open(path) as store:
        await store.record_many([
            ModelRecord(model_id="g1-a", config="hex8_2p", generation=1, uri="u1",
                        sha256="a" * 64, created_at=1.0, training_run="ns/a"),
            ModelRecord(model_id="g2-b", config="hex8_2p", generation=2, uri="u2",
                        sha256="b" * 64, created_at=2.0, training_run="ns/b"),
            EloRating(model_id="g1-a", config="hex8_2p", rating=1550.0, games=10, updated_at=1.0),
            EloRating(model_id="g2-b", config="hex8_2p", rating=1580.0, games=10, updated_at=2.0),
        ])  # fmt: skip
        await store.promote_model(model_id="g2-b", now=3.0)
    points = await load_history_elo(str(path))
    assert [(p["config"], p["generation"], p["rating"], p["promoted"]) for p in points] == [
        ("hex8_2p", 1, 1550.0, False), ("hex8_2p", 2, 1580.0, True)]  # fmt: skip


def test_json_output_is_the_view(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    async def fake_run(args: Any, *, now: Any) -> tuple[Any, str]:
        return {"a": 1}, "text"

    monkeypatch.setattr(main, "run", fake_run)
    assert main.main(["nodes", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert main.main(["nodes"]) == 0
    assert capsys.readouterr().out == "text\n"


# --- settings for `configs` ---------------------------------------------------------------------


class FakeReader:
    """Answers the two reads load_autopilot_settings makes, from ConfigMap objects."""

    def __init__(self, *maps: dict[str, Any], forbidden: bool = False) -> None:
        self.maps = list(maps)
        self.forbidden = forbidden

    async def items(self, path: str, *, query: Any = None) -> list[dict[str, Any]]:
        if self.forbidden:
            raise PluginError("GET /api/v1/configmaps: 403 Forbidden")
        return self.maps

    async def get(self, path: str, *, query: Any = None) -> dict[str, Any]:
        from ringrift_operator.plugin.fetch import NotFound

        name = path.rsplit("/", 1)[1]
        for m in self.maps:
            if m["metadata"]["name"] == name:
                return m
        raise NotFound(path)


def settings_map(name: str, text: str = "autopilot: {priorities: {hex8_2p: 3}}",
                 ns: str = "ringrift-system") -> dict[str, Any]:  # fmt: skip
    return {"metadata": {"name": name, "namespace": ns}, "data": {"settings.yaml": text}}


async def test_settings_come_from_the_one_chart_configmap() -> None:
    from ringrift_operator.plugin.fetch import load_autopilot_settings

    reader: Any = FakeReader(settings_map("rr-settings"))
    settings, source = await load_autopilot_settings(reader, file=None, configmap=None)
    assert settings.priorities == {"hex8_2p": 3}
    assert source == "ConfigMap ringrift-system/rr-settings"


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        pytest.param(FakeReader(), "no operator settings ConfigMap found", id="none"),
        pytest.param(
            FakeReader(forbidden=True), "no operator settings ConfigMap found", id="forbidden"
        ),
        pytest.param(FakeReader(settings_map("a"), settings_map("b")), "several", id="several"),
    ],
)
async def test_otherwise_the_defaults_say_why(reader: Any, expected: str) -> None:
    from ringrift_operator.api.settings import AutopilotSettings
    from ringrift_operator.plugin.fetch import load_autopilot_settings

    settings, source = await load_autopilot_settings(reader, file=None, configmap=None)
    assert settings == AutopilotSettings()
    assert source.startswith("defaults")
    assert expected in source


async def test_a_named_configmap_or_file_wins(tmp_path: Path) -> None:
    from ringrift_operator.plugin.fetch import load_autopilot_settings

    reader: Any = FakeReader(settings_map("a"), settings_map("b", "autopilot: {enabled: true}"))
    settings, source = await load_autopilot_settings(reader, file=None, configmap="x/b")
    assert settings.enabled
    assert source == "ConfigMap ringrift-system/b"
    with pytest.raises(PluginError, match="ConfigMap x/c not found"):
        await load_autopilot_settings(reader, file=None, configmap="x/c")
    path = tmp_path / "s.yaml"
    path.write_text("autopilot: {games_per_job: 7}\n")
    settings, source = await load_autopilot_settings(reader, file=str(path), configmap=None)
    assert (settings.games_per_job, source) == (7, str(path))
    path.write_text("autopilot: {games_per_job: 0}\n")
    with pytest.raises(PluginError, match="invalid operator settings"):
        await load_autopilot_settings(reader, file=str(path), configmap=None)


EXPLAIN = {
    "selfplayJob": "ns/j", "config": "square8_2p", "phase": "Running", "node": "h100-0",
    "powerScore": 1000, "attempts": 2,
    "decision": {"status": "True", "reason": "NodeSelected", "time": "2026-01-01T00:00:00Z",
                 "message": "attempt 2: pod j-sp-2 bound to h100-0 (power score 1000): tier 1"},
    "history": [{"attempt": 1, "node": "l40s-0", "pod": "j-sp-1", "result": "Failed",
                 "reason": "PodFailed"}],
    "events": [{"type": "Normal", "reason": "Scheduled", "message": "bound", "count": 1,
                "time": "2026-01-01T00:00:00Z"}],
    "now": {"candidates": 2, "rejected": 1, "nodeRank": 1, "nodeRejectedBecause": None,
            "top": [{"rank": 1, "node": "h100-0", "powerScore": 1000, "score": 1,
                     "why": "NVIDIA-H100-80GB-HBM3 tier 1"}]},
}  # fmt: skip


def test_explain_text_has_the_decision_attempts_events_and_ranking() -> None:
    text = render.render_explain(EXPLAIN)
    assert "Decision:" in text
    assert "bound to h100-0" in text
    assert "Attempts:\nATTEMPT" in text
    assert "l40s-0" in text
    assert "Events:\nTYPE" in text
    assert "Ranking for this job now (h100-0: #1 of 2; 1 rejected):" in text


def test_explain_text_of_a_job_without_a_node() -> None:
    view = EXPLAIN | {"node": None, "history": [], "events": [],
                      "decision": {"status": None, "reason": None, "message": None, "time": None},
                      "now": {"candidates": 0, "rejected": 3, "nodeRank": None,
                              "nodeRejectedBecause": None, "top": []}}  # fmt: skip
    text = render.render_explain(view)
    assert "Scheduled:" in text
    assert "<none>" in text
    assert "0 candidates, 3 rejected" in text
    assert "no node can take it now" in text


def test_nodes_and_configs_render_as_tables() -> None:
    row = {"rank": 1, "name": "h100-0", "gpu": "NVIDIA-H100-80GB-HBM3", "tier": 1,
           "powerScore": 1000, "cpuPower": 5, "gpus": 8, "gpusFree": 7, "jobs": 1, "ready": True,
           "accepts": True, "why": ""}  # fmt: skip
    lines = render.render_nodes([row]).splitlines()
    assert lines[1].split() == ["1", "h100-0", "NVIDIA-H100-80GB-HBM3", "1", "1000", "8", "7",
                                "1", "True", "yes", "<none>"]  # fmt: skip
    configs = {
        "configs": [{"config": "hex8_2p", "priority": 7, "eloBoost": 2.0, "curriculum": 0.0,
                     "override": 0, "weight": 9.0, "sharePercent": 100.0, "elo": None,
                     "recentJobs": 0, "recentSharePercent": 0.0}],
        "diversity": {"windowJobs": 0, "configEntropyBits": 0.0, "configEvenness": 1.0,
                      "byEngineMode": {}, "mostPicked": None, "leastPicked": None},
        "settingsSource": "defaults (no operator settings ConfigMap found)",
    }  # fmt: skip
    text = render.render_configs(configs)
    assert text.splitlines()[1].split()[:7] == ["hex8_2p", "7", "2", "0", "0", "9", "100.0%"]
    assert "Settings:" in text
    assert "defaults" in text
