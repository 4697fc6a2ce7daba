"""``ringrift-sandbox``: start and stop the sandbox cluster for people (``make sandbox-up``).

``up`` starts a detached supervisor (``serve``) that owns the cluster's processes and waits
until it is ready; ``down`` stops it and checks nothing is left; ``status`` prints the state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ringrift_sandbox.cluster import DEFAULT_NODES, Sandbox, SandboxError, read_state
from ringrift_sandbox.tools import tools_bindir


def _serve(directory: Path, nodes: str) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sandbox = Sandbox(directory, nodes=nodes)
    try:
        sandbox.start()
    except SandboxError as e:
        print(f"sandbox failed to start: {e}", file=sys.stderr)
        (directory / "failed").write_text(str(e))
        return 1
    (directory / "ready").write_text(json.dumps(sandbox.timings))
    try:
        stop.wait()
    finally:
        (directory / "ready").unlink(missing_ok=True)
        sandbox.stop()
    return 0


def _up(directory: Path, nodes: str, timeout: float) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for marker in ("ready", "failed"):
        (directory / marker).unlink(missing_ok=True)
    state = read_state(directory)
    if state and _alive(int(state.get("owner", 0))):
        print(f"sandbox already running: export KUBECONFIG={state['kubeconfig']}")
        return 0
    log = (directory / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringrift_sandbox.cli", "serve", "--dir", str(directory),
         "--nodes", nodes],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    (directory / "supervisor.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (directory / "ready").exists():
            timings = json.loads((directory / "ready").read_text())
            print(f"sandbox up in {timings.get('start', 0):.1f}s ({nodes})")
            print(f"  export KUBECONFIG={directory / 'kubeconfig'}")
            print(f"  export PATH={tools_bindir()}:$PATH  # the sandbox's kubectl and helm")
            print(f"  logs: {directory / 'logs'}; stop with: make sandbox-down")
            return 0
        if (directory / "failed").exists() or proc.poll() is not None:
            print((directory / "supervisor.log").read_text()[-4000:], file=sys.stderr)
            return 1
        time.sleep(0.3)
    print(f"sandbox not ready after {timeout:.0f}s; see {directory / 'logs'}", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _down(directory: Path, timeout: float) -> int:
    pid_file = directory / "supervisor.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    if not _alive(pid):
        print("no sandbox running")
        pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    print("sandbox stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="ringrift-sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=Path(".sandbox"), help="sandbox directory")
        p.add_argument("--nodes", default=DEFAULT_NODES, help="simulated nodes, e.g. h100:2,cpu:1")
        p.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    if args.command == "serve":
        return _serve(directory, args.nodes)
    if args.command == "up":
        return _up(directory, args.nodes, args.timeout)
    if args.command == "down":
        return _down(directory, args.timeout)
    state = read_state(directory)
    print(json.dumps(state, indent=2) if state else "no sandbox running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
