"""``make demo``: the sandbox cluster, the CRDs, the operator and the sample loop, end to end.

``up`` starts (or reuses) the sandbox in ``--dir``, installs ``crds/``, starts the operator as a
background process, applies ``manifests/demo/``, and prints ``kubectl get`` tables as the jobs
go Pending → Running → Complete, then ``kubectl get trainingruns``. Everything keeps running
afterwards for you to explore; ``down`` stops the operator and the sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ringrift_sandbox.cli import main as sandbox_main
from ringrift_sandbox.cluster import free_port
from ringrift_sandbox.simulator import set_rules
from ringrift_sandbox.tools import find_tool

DEMO_NODES = "h100:1,gh200:1,a100:2,l40s:2,rtx4090:2,rtx3090:1,cpu:2"
REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"Complete", "Failed", "Expired", "Promoted", "Skipped"}


def kubectl(directory: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig")}
    result = subprocess.run(
        [str(find_tool("kubectl")), *args], env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def start_operator(directory: Path) -> int:
    pid_file = directory / "operator.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text() or 0)):
        return int(pid_file.read_text())
    # A fresh cluster gets a fresh history (models, Elo, reputation) too.
    for stale in ("history.db", "history.db-wal", "history.db-shm"):
        (directory / stale).unlink(missing_ok=True)
    log = (directory / "operator.log").open("ab")
    env = {
        **os.environ,
        "RINGRIFT_HISTORY_PATH": str(directory / "history.db"),
        "RINGRIFT_AGENT_TOKEN_FILE": str(directory / "agent-token"),
        "RINGRIFT_RESYNC_SECONDS": "10",
        "RINGRIFT_HTTP_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringrift_operator.cli", "run",
         f"--kubeconfig={directory / 'kubeconfig'}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while b"controller started" not in (directory / "operator.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (directory / "operator.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the operator did not start; its log:\n{tail}")
        time.sleep(0.3)
    return proc.pid


def stop_operator(directory: Path) -> None:
    pid_file = directory / "operator.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text() or 0)
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def phases(directory: Path, plural: str) -> dict[str, str]:
    items = json.loads(kubectl(directory, "get", plural, "-o", "json"))["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def watch(directory: Path, plural: str, *, deadline: float, t0: float) -> bool:
    """Print ``kubectl get <plural> -o wide`` whenever it changes, until all are finished."""
    last = ""
    while time.monotonic() < deadline:
        table = kubectl(directory, "get", plural, "-o", "wide")
        if table != last:
            print(f"\n$ kubectl get {plural} -o wide   # t+{time.monotonic() - t0:.0f}s")
            print(table, end="", flush=True)
            last = table
        current = phases(directory, plural)
        if current and all(p in TERMINAL for p in current.values()):
            return True
        time.sleep(2)
    print(f"\n{plural} did not all finish in time; see {directory / 'operator.log'}",
          file=sys.stderr)  # fmt: skip
    return False


def up(directory: Path, nodes: str, timeout: float) -> int:
    t0 = time.monotonic()
    print(f"==> sandbox cluster ({nodes})", flush=True)
    if sandbox_main(["up", "--dir", str(directory), "--nodes", nodes]) != 0:
        return 1
    print("==> CRDs", flush=True)
    kubectl(directory, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(directory, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    print("==> operator", flush=True)
    pid = start_operator(directory)
    print(f"    running as pid {pid}, log {directory / 'operator.log'}")
    # Simulated workloads take a few seconds each, so the tables show them running; the
    # sample gauntlet is told how well the new model plays (a real workload decides itself).
    set_rules(
        directory,
        [
            {"namespace": "default", "selector": "ringrift.ai/job-kind=gauntlet",
             "durationMs": 3000, "env": {"RINGRIFT_SAMPLE_WIN_RATE_PERCENT": "70"}},
            {"namespace": "default", "durationMs": 4000},
        ],
    )  # fmt: skip
    print("==> sample self-play (manifests/demo/)", flush=True)
    print(kubectl(directory, "apply", "-f", str(REPO / "manifests" / "demo")), end="")
    deadline = time.monotonic() + timeout
    if not watch(directory, "selfplayjobs", deadline=deadline, t0=t0):
        return 1
    print("\n==> training: sync, export, train, gauntlet, promotion", flush=True)
    if not watch(directory, "trainingruns", deadline=deadline, t0=t0):
        return 1
    print(kubectl(directory, "get", "syncplans"), end="")
    if phases(directory, "trainingruns").get("square8-2p-gen1") == "Promoted":
        print("\n==> self-play on the promoted model (manifests/demo/next/)", flush=True)
        print(kubectl(directory, "apply", "-f", str(REPO / "manifests" / "demo" / "next")), end="")
        if not watch(directory, "selfplayjobs", deadline=deadline, t0=t0):
            return 1
        pod = json.loads(kubectl(directory, "get", "selfplayjob", "square8-2p-gen1-selfplay",
                                 "-o", "json"))["status"].get("pod", "")  # fmt: skip
        env = kubectl(
            directory,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.spec.containers[0].env[?(@.name=='RINGRIFT_MODEL_PATH')].value}",
        )
        print(f"    {pod} played with RINGRIFT_MODEL_PATH={env}")
    print("\n$ kubectl get trainingruns")
    print(kubectl(directory, "get", "trainingruns") or "No resources found.\n", end="")
    print(
        f"\nDone in {time.monotonic() - t0:.0f}s. The cluster keeps running:\n"
        f"  export KUBECONFIG={directory / 'kubeconfig'}\n"
        f"  {find_tool('kubectl')} get ringrift\n"
        f"  {Path(sys.executable).parent / 'kubectl-ringrift'} status   # the kubectl plugin\n"
        f"  make demo-down   # stops the operator and the sandbox"
    )
    return 0


def down(directory: Path) -> int:
    stop_operator(directory)
    return sandbox_main(["down", "--dir", str(directory)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringrift-demo", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--nodes", default=DEMO_NODES)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "up":
        return up(directory, args.nodes, args.timeout)
    return down(directory)


if __name__ == "__main__":
    sys.exit(main())
