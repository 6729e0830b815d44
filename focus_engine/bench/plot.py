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
    Runs without accuracy or forward passes are left out. Where some run
    handed out regions, a second panel draws the region mIoU the same way
    (``metrics.region_scores``; the plain answer has none). Without matplotlib
    nothing is written and [] is returned."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning('accuracy plot skipped: matplotlib is not installed '
                    '(pip install "comfyui-focus[bench]" or pip install matplotlib adds it)')
        return []

    panels = [("accuracy", "accuracy %", "accuracy vs forward passes")]
    if any(run.metrics.get("region_miou") is not None for run in result.runs):
        panels.append(("region_miou", "region mIoU % (selected ROIs vs GT boxes)", "where it looked"))
    fig = Figure(figsize=(9.6 + 6.4 * (len(panels) - 1), 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    # one colour per method in every panel, and one legend for them all
    colours = {method: f"C{i}" for i, method in enumerate(dict.fromkeys(run.method for run in result.runs))}
    for ax, (metric, ylabel, title) in zip(axes, panels):
        _draw_metric(ax, result.runs, metric, colours)
        ax.set_xlim(left=0)
        ax.set_ylim(0, 100)
        ax.set_xlabel("forward passes per question (visual search)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} - {', '.join(result.datasets)} ({result.n_items} questions)")
        ax.grid(True, alpha=0.3)
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside right center", frameon=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{PLOT_STEM}.png", out / f"{PLOT_STEM}.svg"]
    # svg.fonttype "none": SVG text stays text (searchable, selectable), not glyph paths
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": PLOT_STEM}):
        fig.savefig(paths[0], dpi=100)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths


def _draw_metric(ax: Any, runs: Any, metric: str, colours: dict[str, str]) -> None:
    """One line per method of ``metric`` (a share, drawn in %) against forward
    passes, in the method's colour."""
    series: dict[str, list[tuple[float, float, int | None]]] = {}
    for run in runs:
        value, passes = run.metrics.get(metric), run.metrics.get("forward_passes")
        if value is not None and passes is not None:
            series.setdefault(run.method, []).append((float(passes), 100.0 * value, run.n_steps))
    for method, points in series.items():
        points.sort(key=lambda p: (p[2] is not None, p[2] or 0))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        line, = ax.plot(xs, ys, marker="o", linewidth=2, label=method, color=colours[method])
        if method == "vanilla":
            ax.axhline(ys[0], color=line.get_color(), linestyle="--", linewidth=1.5)
        for x, y, n in points:
            if n is not None:
                ax.annotate(f"n={n}", (x, y), xytext=(5, 5), textcoords="offset points",
                            color=line.get_color(), fontsize=9)


__all__ = ["PLOT_STEM", "plot_accuracy"]
