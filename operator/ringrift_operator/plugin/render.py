"""The plugin's views as text: kubectl-style tables and ``describe``-style sections.

Pure: a view (a dict from ``views``) in, a string out.
"""

from __future__ import annotations

from typing import Any

from ringrift_operator.plugin.tables import format_pairs, format_table

JsonDict = dict[str, Any]


def _phases(counts: dict[str, int]) -> str:
    shown = [f"{phase} {n}" for phase, n in counts.items() if n]
    return ", ".join(shown) if shown else "none"


def render_status(view: JsonDict) -> str:
    lead = view["leadership"]
    gpus = view["gpus"]
    if lead["lease"] is None:
        leader = "no operator Lease found (is the operator running with leader election?)"
    else:
        state = "expired" if lead["expired"] else f"renewed {lead['renewedAgo']}s ago"
        leader = f"{lead['leader'] or 'nobody'} ({state}, lease {lead['lease']})"
    pairs: list[tuple[str, object]] = [
        ("Leader", leader),
        ("Epoch", lead["epoch"]),
        ("SelfplayJobs", _phases(view["selfplayJobs"])),
        ("TrainingRuns", _phases(view["trainingRuns"])),
        ("GPUs", f"{gpus['busy']} busy, {gpus['idle']} idle of {gpus['total']} "
                 f"on {gpus['gpuNodes']} GPU nodes ({gpus['readyNodes']}/{gpus['nodes']} "
                 f"nodes Ready, {gpus['operatorPods']} operator pods)"),
        ("Sync backlog", f"{view['sync']['missingFiles']} file(s) missing on targets"),
    ]  # fmt: skip
    operator = view.get("operator")
    if operator is not None:
        loops = operator.get("loops") or {}
        names = sorted(loops) if isinstance(loops, dict) else []
        pairs.append(("Operator", f"{operator.get('identity')} ({operator.get('role')})"))
        pairs.append(("Loops", ", ".join(names) or "none"))
    parts = [format_pairs(pairs)]
    if view["training"]:
        rows = [
            [r["config"], r["gamesProduced"], r["trainingRun"], r["phase"], r["dataReady"],
             r["reason"], r["message"]]
            for r in view["training"]
        ]  # fmt: skip
        headers = ["config", "games", "trainingrun", "phase", "dataready", "reason", "message"]
        parts.append("Training readiness:\n" + format_table(headers, rows))
    if view["sync"]["plans"]:
        rows = [
            [p["syncPlan"], p["state"], p["missingFiles"], p["filesSynced"], p["lastSyncTime"]]
            for p in view["sync"]["plans"]
        ]
        headers = ["syncplan", "state", "missing", "synced", "last sync"]
        parts.append("Sync plans:\n" + format_table(headers, rows))
    return "\n\n".join(parts)


def render_nodes(rows: list[JsonDict]) -> str:
    table = [
        [r["rank"], r["name"], r["gpu"], r["tier"], r["powerScore"], r["gpus"], r["gpusFree"],
         r["jobs"], "True" if r["ready"] else "False", "yes" if r["accepts"] else "no", r["why"]]
        for r in rows
    ]  # fmt: skip
    headers = ["rank", "name", "gpu", "tier", "power", "gpus", "free", "jobs", "ready",
               "takes-gpu-job", "why"]  # fmt: skip
    return format_table(headers, table)


def render_configs(view: JsonDict) -> str:
    rows = [
        [c["config"], c["priority"], c["eloBoost"], c["curriculum"], c["override"], c["weight"],
         f"{c['sharePercent']}%", c["elo"], c["recentJobs"], f"{c['recentSharePercent']}%"]
        for c in view["configs"]
    ]  # fmt: skip
    headers = ["config", "priority", "elo-boost", "curriculum", "override", "weight", "share",
               "elo", "recent-jobs", "recent-share"]  # fmt: skip
    d = view["diversity"]
    modes = ", ".join(f"{m} {n}" for m, n in d["byEngineMode"].items()) or "none"
    summary = format_pairs(
        [
            ("Recent jobs", d["windowJobs"]),
            ("Config entropy", f"{d['configEntropyBits']} bits (evenness {d['configEvenness']})"),
            ("Most picked", d["mostPicked"]),
            ("Least picked", d["leastPicked"]),
            ("Engine modes", modes),
            *([("Settings", view["settingsSource"])] if "settingsSource" in view else []),
        ]
    )
    return format_table(headers, rows) + "\n\n" + summary


def render_explain(view: JsonDict) -> str:
    decision = view["decision"]
    now = view["now"]
    pairs: list[tuple[str, object]] = [
        ("SelfplayJob", view["selfplayJob"]),
        ("Config", view["config"]),
        ("Phase", view["phase"]),
        ("Node", view["node"]),
        ("Power score", view["powerScore"]),
        ("Attempts", view["attempts"]),
        ("Scheduled", f"{decision['status']} ({decision['reason']}) at {decision['time']}"
                      if decision["status"] else None),
        ("Decision", decision["message"]),
    ]  # fmt: skip
    parts = [format_pairs(pairs)]
    if view["history"]:
        rows = [[a.get("attempt"), a.get("node"), a.get("pod"), a.get("result"), a.get("reason")]
                for a in view["history"]]  # fmt: skip
        parts.append("Attempts:\n" + format_table(["attempt", "node", "pod", "result", "reason"],
                                                  rows))  # fmt: skip
    if view["events"]:
        rows = [[e["type"], e["reason"], e["time"], e["message"]] for e in view["events"]]
        parts.append("Events:\n" + format_table(["type", "reason", "time", "message"], rows))
    if view["node"]:
        where = (
            f"#{now['nodeRank']} of {now['candidates']}"
            if now["nodeRank"]
            else f"not a candidate now: {now['nodeRejectedBecause'] or 'not in the ranking'}"
        )
        head = f"Ranking for this job now ({view['node']}: {where}; {now['rejected']} rejected):"
    else:
        counts = f"{now['candidates']} candidates, {now['rejected']} rejected"
        head = f"Ranking for this job now ({counts}):"
    rows = [[r["rank"], r["node"], r["powerScore"], r["why"]] for r in now["top"]]
    parts.append(head + "\n" + (format_table(["rank", "node", "power", "why"], rows)
                                if rows else "no node can take it now"))  # fmt: skip
    return "\n\n".join(parts)


def render_elo(points: list[JsonDict]) -> str:
    rows = [[p["config"], p["generation"], round(p["rating"]), p["eloDelta"],
             "yes" if p["promoted"] else "no", p["trainingRun"]] for p in points]  # fmt: skip
    if not rows:
        return "No evaluated models yet (no TrainingRun has a gauntlet result)."
    return format_table(["config", "generation", "elo", "delta", "promoted", "trainingrun"], rows)
