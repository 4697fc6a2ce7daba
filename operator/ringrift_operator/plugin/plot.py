"""``kubectl ringrift elo --plot FILE.png``: Elo per generation, one line per config, promoted
models marked. matplotlib is optional (the ``bench`` extra) and imported only here, when a plot
is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ringrift_operator.plugin.fetch import PluginError

JsonDict = dict[str, Any]
MISSING = (
    "drawing needs matplotlib, which is not installed: "
    "pip install 'ringrift-operator[bench]' (or pip install matplotlib)"
)


def group_series(points: Sequence[JsonDict]) -> dict[str, list[JsonDict]]:
    """Points per config, by generation (then the order given)."""
    series: dict[str, list[JsonDict]] = {}
    for p in points:
        series.setdefault(str(p["config"]), []).append(p)
    for rows in series.values():
        rows.sort(key=lambda p: int(p["generation"]))
    return series


def plot_elo(points: Sequence[JsonDict], path: str | Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PluginError(MISSING) from e
    out = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for config, rows in group_series(points).items():
            gens = [int(p["generation"]) for p in rows]
            ratings = [float(p["rating"]) for p in rows]
            (line,) = ax.plot(gens, ratings, marker="o", markersize=3, label=config)
            marked = [i for i, p in enumerate(rows) if p["promoted"]]
            if marked:
                ax.scatter([gens[i] for i in marked], [ratings[i] for i in marked], s=60,
                           facecolors="none", edgecolors=line.get_color())  # fmt: skip
        ax.set_xlabel("model generation")
        ax.set_ylabel("Elo")
        ax.set_title("Elo per generation and config (circled: promoted)")
        ax.grid(True, alpha=0.3)
        if points:
            ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no evaluated models yet", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
