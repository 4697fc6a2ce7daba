"""The launcher leaves nothing behind: no process and no bound port, after a clean stop and after
its owner is killed outright (children die with their parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster_support import skip_module_on_existing_cluster
from ringrift_sandbox.cluster import Sandbox, port_is_free, read_state
from tests_support import poll

pytestmark = skip_module_on_existing_cluster("starts and kills sandboxes of its own")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds no port and no memory.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_leaves_no_process_and_frees_every_port(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "sb", nodes="cpu:1")
    box.start()
    pids = [c.process.pid for c in box.components.values() if c.process]
    ports = dict(box.ports)
    assert len(pids) == 5
    assert all(_alive(p) for p in pids)

    box.stop()

    assert not any(_alive(p) for p in pids)
    assert all(port_is_free(p) for p in ports.values()), ports
    assert read_state(tmp_path / "sb") is None


def test_killing_the_owner_takes_the_cluster_down(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    owner = subprocess.Popen(
        [sys.executable, "-m", "ringrift_sandbox.cli", "serve", "--dir", str(directory),
         "--nodes", "cpu:1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        poll(lambda: (directory / "ready").exists(), until=bool, timeout=90, what="sandbox ready")
        state = read_state(directory)
        assert state is not None
        pids = [int(p) for p in state["pids"].values()]
        assert all(_alive(p) for p in pids)

        owner.send_signal(signal.SIGKILL)  # no chance to clean up: the children must go anyway
        owner.wait(timeout=10)

        poll(lambda: [p for p in pids if _alive(p)], until=lambda left: not left, timeout=30,
             what="every component to exit")  # fmt: skip
        poll(lambda: all(port_is_free(p) for p in state["ports"].values()), until=bool,
             timeout=15, what="ports freed")  # fmt: skip
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_new_sandbox_cleans_up_after_a_dead_one(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    directory.mkdir()
    (directory / "sandbox.json").write_text(json.dumps({"owner": 999999999, "pids": {}}))
    with Sandbox(directory, nodes="cpu:1") as box:
        assert box.ready_nodes() == ["cpu-0"]
