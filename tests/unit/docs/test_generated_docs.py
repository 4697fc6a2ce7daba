"""The reference docs generated from the code (hack/gen_docs.py) are current, and say what the
code has: every metric of the operator's registry, every settings field with its variable."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from ringrift_operator.api.settings import OperatorSettings, load_settings

REPO = Path(__file__).resolve().parents[3]


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "hack" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module
    spec.loader.exec_module(module)
    return module


gen_docs = _load()


@pytest.mark.parametrize(
    "path", [gen_docs.METRICS_DOC, gen_docs.SETTINGS_DOC], ids=lambda p: p.name
)
def test_the_generated_doc_is_current(path: Path) -> None:
    expected = gen_docs.generated()[path]
    assert path.read_text() == expected, f"{path.name} is stale: run make docs"


def test_every_metric_of_the_registry_is_documented_with_its_labels() -> None:
    registry = gen_docs.operator_registry()
    doc = gen_docs.METRICS_DOC.read_text()
    names = {family.name for family in registry.collect()}
    assert len(names) >= 10
    for family in registry.collect():
        assert family.name.startswith("ringrift_")
        assert f"`{family.name}" in doc
    rows = {r["name"]: r for r in gen_docs.metric_rows(registry)}
    assert rows["ringrift_jobs_total"]["labels"] == ["kind", "outcome"]
    assert rows["ringrift_placement_latency_seconds"]["type"] == "histogram"
    assert rows["ringrift_syncplan_pulls_total"]["labels"] == ["namespace", "syncplan", "outcome"]


def test_every_setting_is_documented_and_its_variable_really_sets_it() -> None:
    rows = gen_docs.settings_rows()
    doc = gen_docs.SETTINGS_DOC.read_text()
    assert {r["key"] for r in rows} >= {"workers", "workload.image", "autopilot.enabled",
                                        "lease_duration_seconds"}  # fmt: skip
    for r in rows:
        assert f"| `{r['key']}` | `{r['env']}` |" in doc
        assert r["description"], f"{r['key']} has no description"
    # The documented variable names are the ones load_settings reads.
    settings = load_settings(environ={"RINGRIFT_WORKERS": "7",
                                      "RINGRIFT_AUTOPILOT__GAMES_PER_JOB": "9"})  # fmt: skip
    assert (settings.workers, settings.autopilot.games_per_job) == (7, 9)
    defaults = OperatorSettings()
    workers = next(r for r in rows if r["key"] == "workers")
    assert workers["default"] == str(defaults.workers)
    assert "≤ 256" in workers["bounds"]
