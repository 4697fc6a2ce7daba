"""The Dockerfile, parsed (no Docker here to build it): multi-stage, a final stage that adds only
the builder's virtualenv and runs as uid 65532 with the ``ringrift-operator`` entry point, and a
.dockerignore that keeps the context small. Also: the commands the chart's containers run exist
(the subcommands of the CLI, the agent's flags)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ringrift_operator.agent.server import build_parser
from ringrift_operator.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[3]
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cc ", "clang", "apt-get", "apk ", "pip ")


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for name, args in self.instructions if name == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARGs before the first FROM, stages); continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = rest.split()
            base = words[0]
            for key, value in args.items():
                base = base.replace(f"${{{key}}}", value)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=base, name=name))
        elif not stages and op == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((op, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())[1]


def test_it_is_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) == 2
    assert stages[0].name == "builder"
    assert all(stage.base == "python:3.11-slim" for stage in stages)


def test_the_builder_installs_the_package_into_a_venv(stages: list[Stage]) -> None:
    runs = " ".join(stages[0].all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert "/opt/venv/bin/pip install ." in runs


def test_the_final_stage_only_copies_the_venv(stages: list[Stage]) -> None:
    final = stages[-1]
    assert final.all("COPY") == ["--from=builder /opt/venv /opt/venv"]
    assert final.all("ADD") == []
    assert final.all("RUN") == []  # nothing installed, so no compiler or package manager
    text = " ".join(args for _, args in final.instructions)
    assert not [tool for tool in BUILD_TOOLS if tool in text]
    assert "PATH=/opt/venv/bin:$PATH" in " ".join(final.all("ENV"))


def test_the_final_stage_runs_as_numeric_uid_65532(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid == "65532"
    assert gid in {"", "65532"}


def test_entrypoint_and_cmd(stages: list[Stage]) -> None:
    final = stages[-1]
    assert [json.loads(e) for e in final.all("ENTRYPOINT")] == [["ringrift-operator"]]
    assert [json.loads(c) for c in final.all("CMD")] == [["run"]]
    assert "run" in SUBCOMMANDS


def test_dockerignore_excludes_everything_but_the_package() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(patterns)


def test_the_builder_copies_what_dockerignore_lets_in(stages: list[Stage]) -> None:
    # COPY <source>... <destination>: every word but the last is a source
    copied = {word for c in stages[0].all("COPY") for word in shlex.split(c)[:-1]}
    assert copied == {"pyproject.toml", "README.md", "operator/"}
    assert all((REPO / path).exists() for path in copied)


def test_the_agent_flags_the_chart_passes_exist() -> None:
    import yaml

    docs = [d for d in yaml.safe_load_all((REPO / "manifests/install.yaml").read_text()) if d]
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    agent_args = daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
    operator_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert agent_args[0] in SUBCOMMANDS
    assert operator_args[0] in SUBCOMMANDS
    parsed = build_parser().parse_args(agent_args[1:])
    assert str(parsed.token_file) == "/var/run/ringrift/agent-token"
    assert str(parsed.data_dir) == "/var/lib/ringrift"
