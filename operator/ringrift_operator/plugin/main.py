"""``kubectl-ringrift``: the kubectl plugin (installed as a console script; kubectl finds any
``kubectl-<name>`` on PATH, so ``kubectl ringrift status`` runs it).

Commands: ``status`` (the loop at a glance), ``nodes`` (ranked by power score), ``configs`` (the
self-play scheduler's weights, Elo, diversity), ``explain <selfplayjob>`` (why that node) and
``elo [--plot FILE.png]`` (Elo per generation and config). Everything comes from the API server;
``--status-url`` adds the operator's own ``/status`` and ``--history`` reads its history store
file instead of the TrainingRun statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ringrift_operator.plugin import render, views
from ringrift_operator.plugin.fetch import (
    PluginError,
    Reader,
    fetch_events,
    fetch_objects,
    fetch_operator_status,
    fetch_selfplayjob,
    load_autopilot_settings,
    load_history_elo,
)

PROG = "kubectl ringrift"


def _common(*, top: bool) -> argparse.ArgumentParser:
    """The global flags, accepted before and after the command (as kubectl accepts them).
    After the command they default to SUPPRESS, so they do not undo the ones given before."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    common.add_argument("-n", "--namespace", default=default(None),
                        help="only this namespace's resources (default: every namespace; "
                        "explain: the context's namespace)")  # fmt: skip
    common.add_argument(
        "--kubeconfig",
        default=default(None),
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    common.add_argument("--context", default=default(None), help="kubeconfig context to use")
    common.add_argument("-o", "--output", choices=["table", "json"], default=default("table"),
                        help="output format")  # fmt: skip
    return common


def build_parser() -> argparse.ArgumentParser:
    top, common = _common(top=True), _common(top=False)
    parser = argparse.ArgumentParser(
        prog=PROG, description="The RingRift self-improvement loop at a glance.",
        parents=[top],
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("status", parents=[common], help="leader, epoch, jobs, GPUs, training "
                       "readiness per config, sync backlog")  # fmt: skip
    p.add_argument("--lease", help="the operator's Lease as namespace/name "
                   "(default: the Lease named like ringrift-operator renewed last)")  # fmt: skip
    p.add_argument("--status-url", help="also read the operator's /status, e.g. "
                   "http://localhost:8080 after kubectl port-forward")  # fmt: skip
    sub.add_parser("nodes", parents=[common], help="nodes ranked by GPU power, free GPUs, jobs")
    p = sub.add_parser("configs", parents=[common], help="self-play priorities, weights, Elo, "
                       "diversity")  # fmt: skip
    p.add_argument("--settings", help="operator settings file (YAML) instead of the ConfigMap")
    p.add_argument("--settings-configmap", help="the chart's settings ConfigMap as "
                   "namespace/name (default: found by its labels)")  # fmt: skip
    p = sub.add_parser("explain", parents=[common], help="why a SelfplayJob runs where it runs")
    p.add_argument("selfplayjob", help="name of the SelfplayJob")
    p = sub.add_parser("elo", parents=[common], help="Elo per model generation and config")
    p.add_argument("--plot", metavar="FILE.png", help="draw the curves into this file "
                   "(needs matplotlib)")  # fmt: skip
    p.add_argument("--history", metavar="DB", help="read the operator's history store file "
                   "instead of the TrainingRun statuses")  # fmt: skip
    return parser


def _default_namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
    except Exception:
        return "default"  # in-cluster, or no kubeconfig: the API calls will say what is wrong
    if args.context:
        active = next((c for c in contexts if c["name"] == args.context), active)
    return str((active.get("context") or {}).get("namespace") or "default")


async def run(args: argparse.Namespace, *, now: datetime) -> tuple[Any, str]:
    """Execute one command: (the JSON view, its text rendering)."""
    if args.command == "elo" and args.history:
        points = await load_history_elo(args.history)
        return points, render.render_elo(points)
    reader = await Reader.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        ns = args.namespace
        if args.command == "status":
            objs = await fetch_objects(reader, namespace=ns)
            op = fetch_operator_status(args.status_url) if args.status_url else None
            status = views.status_view(objs, now=now, lease_name=args.lease, operator_status=op)
            return status, render.render_status(status)
        if args.command == "nodes":
            objs = await fetch_objects(reader, namespace=ns, want=frozenset({"nodes", "pods"}))
            rows = views.nodes_view(objs)
            return rows, render.render_nodes(rows)
        if args.command == "configs":
            objs = await fetch_objects(reader, namespace=ns,
                                 want=frozenset({"selfplayjobs", "trainingruns"}))  # fmt: skip
            settings, source = await load_autopilot_settings(
                reader, file=args.settings, configmap=args.settings_configmap
            )
            view = views.configs_view(objs, settings=settings)
            view["settingsSource"] = source
            return view, render.render_configs(view)
        if args.command == "explain":
            job = await fetch_selfplayjob(reader, namespace=_default_namespace(args),
                                    name=args.selfplayjob)  # fmt: skip
            objs = await fetch_objects(reader, namespace=None, want=frozenset({"nodes", "pods"}))
            view = views.explain_view(job, events=await fetch_events(reader, obj=job), objs=objs)
            return view, render.render_explain(view)
        if args.command == "elo":
            objs = await fetch_objects(reader, namespace=ns, want=frozenset({"trainingruns"}))
            points = views.elo_points(objs.trainingruns)
            return points, render.render_elo(points)
    finally:
        await reader.close()
    raise PluginError(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        view, text = asyncio.run(run(args, now=datetime.now(UTC)))
        if args.command == "elo" and args.plot:
            from ringrift_operator.plugin.plot import plot_elo

            plot_elo(view, args.plot)
            print(f"wrote {args.plot}", file=sys.stderr)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(view, indent=2, default=str))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
