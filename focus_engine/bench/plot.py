"""The benchmark chart: accuracy (%) against mean forward passes per question,
drawn with matplotlib (an optional dependency: ``pip install "comfyui-focus[bench]"``).
matplotlib is imported only when a plot is drawn, so importing the engine stays light."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("focus_engine.bench")

PLOT_STEM = "accuracy_vs_forward_passes"


def plot_accuracy(result: Any, out_dir: str | Path) -> list[Path]:
    """Write ``PLOT_STEM``.png and .svg to ``out_dir`` and return their paths:
    one line per method through its n_steps points (labelled n=...), methods
    without a sweep as single points, vanilla also as a dashed horizontal line.
    Runs without accuracy or forward passes are left out. Without matplotlib
    nothing is written and [] is returned."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning('accuracy plot skipped: matplotlib is not installed '
                    '(pip install "comfyui-focus[bench]" or pip install matplotlib adds it)')
        return []

    series: dict[str, list[tuple[float, float, int | None]]] = {}
    for run in result.runs:
        acc, passes = run.metrics.get("accuracy"), run.metrics.get("forward_passes")
        if acc is not None and passes is not None:
            series.setdefault(run.method, []).append((float(passes), 100.0 * acc, run.n_steps))

    fig = Figure(figsize=(9.6, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method, points in series.items():
        points.sort(key=lambda p: (p[2] is not None, p[2] or 0))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        line, = ax.plot(xs, ys, marker="o", linewidth=2, label=method)
        if method == "vanilla":
            ax.axhline(ys[0], color=line.get_color(), linestyle="--", linewidth=1.5)
        for x, y, n in points:
            if n is not None:
                ax.annotate(f"n={n}", (x, y), xytext=(5, 5), textcoords="offset points",
                            color=line.get_color(), fontsize=9)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 100)
    ax.set_xlabel("forward passes per question (visual search)")
    ax.set_ylabel("accuracy %")
    ax.set_title(f"accuracy vs forward passes - {', '.join(result.datasets)} ({result.n_items} questions)")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{PLOT_STEM}.png", out / f"{PLOT_STEM}.svg"]
    # svg.fonttype "none": SVG text stays text (searchable, selectable), not glyph paths
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": PLOT_STEM}):
        fig.savefig(paths[0], dpi=100)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths


__all__ = ["PLOT_STEM", "plot_accuracy"]
