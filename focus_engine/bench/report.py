"""A benchmark run's report: the results per run (method at one ``n_steps``),
loaded from the records on disk, written as results.json and the plot, and
the plain-text summary table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FocusConfigError
from .metrics import summarize
from .records import RECORDS_GLOB, RUN_FILE, read_records, records_by_run

RESULTS_FILE = "results.json"


@dataclass
class RunResult:
    """One method at one ``n_steps`` over all items."""

    method: str
    n_steps: int | None
    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.method if self.n_steps is None else f"{self.method}@{self.n_steps}"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "n_steps": self.n_steps, "label": self.label, "metrics": self.metrics,
                "config": self.config, "records": self.records}


@dataclass
class BenchmarkResult:
    runs: list[RunResult]
    n_items: int
    datasets: list[str]
    model: str
    settings: dict[str, Any] = field(default_factory=dict)

    def run(self, method: str, n_steps: int | None = None) -> RunResult:
        for run in self.runs:
            if run.method == method and (n_steps is None or run.n_steps == n_steps):
                return run
        raise KeyError(f"no run of {method!r} at n_steps={n_steps}")

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "datasets": self.datasets, "n_items": self.n_items, "settings": self.settings,
            "summary": [{"label": r.label, **r.metrics} for r in self.runs],
            "runs": [r.to_json() for r in self.runs],
        }


def load_result(out_dir: str | Path) -> BenchmarkResult:
    """The result of the run in ``out_dir``, from its run.json and records.jsonl
    (whatever is there: a run still going or cut off reports what it has)."""
    out = Path(out_dir)
    if not (out / RUN_FILE).is_file():
        raise FocusConfigError(f"{out} holds no benchmark run (no {RUN_FILE}); run `focus bench run --out {out}` first")
    plan = json.loads((out / RUN_FILE).read_text())
    labels = [r["label"] for r in plan["runs"]]
    records = [r for path in sorted(out.glob(RECORDS_GLOB)) for r in read_records(path)]
    stored = records_by_run(records, labels, plan["items"])
    runs = []
    for entry in plan["runs"]:
        run = RunResult(entry["method"], entry["n_steps"], entry["config"], stored[entry["label"]])
        run.metrics = summarize(run.records)
        runs.append(run)
    datasets = sorted({r["dataset"] for rs in stored.values() for r in rs})
    return BenchmarkResult(runs=runs, n_items=len(plan["items"]), datasets=datasets, model=plan["model"],
                           settings=plan["settings"])


def write_report(out_dir: str | Path) -> BenchmarkResult:
    """results.json and the plot of the run in ``out_dir``, from its records."""
    result = load_result(out_dir)
    write_results(result, out_dir)
    return result


def write_results(result: BenchmarkResult, out_dir: str | Path) -> list[Path]:
    """``results.json`` and the accuracy-vs-forward-passes plot (PNG and SVG,
    when matplotlib is installed)."""
    from .plot import plot_accuracy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / RESULTS_FILE
    json_path.write_text(json.dumps(result.to_json(), indent=1))
    return [json_path, *plot_accuracy(result, out)]


def format_summary(result: BenchmarkResult) -> str:
    """A plain-text table: one row per run, with how many of the questions
    it has answered (a run cut off reports what it has); ``mIoU``, ``IoU.5``
    and ``area×`` are the region metrics (``metrics.region_scores``), ``box``
    and ``relev.`` the mask mIoU of the two mask shapes against the objects'
    true masks, where the items have them (``metrics.mask_scores``)."""
    rows = [f"{'run':<22} {'answered':>9} {'acc %':>6} {'FP/q':>6} {'s/q':>7} {'recall':>7} {'sel.rec':>7} "
            f"{'mIoU':>6} {'IoU.5':>6} {'area×':>6} {'box':>6} {'relev.':>6} {'peak':>6} {'gated':>6}"]

    def cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    for run in result.runs:
        m = run.metrics
        mask = m.get("mask") or {}
        answered = f"{m['n']}/{result.n_items}"
        rows.append(
            f"{run.label:<22} {answered:>9} {cell(m['accuracy'], 100):>6} {cell(m['forward_passes']):>6} "
            f"{cell(m['seconds'], digits=2):>7} {cell(m['roi_recall_ranked'], 100):>7} "
            f"{cell(m['roi_recall_selected'], 100):>7} {cell(m.get('region_miou'), 100):>6} "
            f"{cell(m.get('region_hit_rate'), 100):>6} {cell(m.get('region_area_ratio')):>6} "
            f"{cell(mask.get('box', {}).get('miou'), 100):>6} {cell(mask.get('relevance', {}).get('miou'), 100):>6} "
            f"{cell(m['peak_hit_rate'], 100):>6} "
            f"{cell(m.get('gate_answered'), 100):>6}"
        )
    return "\n".join(rows)
