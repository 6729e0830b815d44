"""Run methods over benchmark items: vanilla, FOCUS, and the paper's ablations.

Methods (names as on the command line):
- ``vanilla``: one answer on the full image (multiple-choice prompt).
- ``focus``: the FocusPipeline as configured.
- ``random``: a random relevance map, then the usual ranking.
- ``no-ranking``: the relevance map's first ROI, unverified (n_steps=1,
  no overrun); run once, whatever ``n_steps_list`` says.
- ``keys``: pre-RoPE keys instead of values.
- ``layers:A-B``: relevance summed over decoder layers ``[A, B)`` (0-based,
  half-open, like ``FocusConfig.layers``), e.g. ``layers:0-14``.
- ``focus-shared``: maps of the targets the question names read from the
  answer prompt's own prefill (``map_prompt="question"``).
- ``focus-gated``: that, plus the gate: the plain answer stands when its
  confidence reaches ``GATED_THRESHOLD`` (calibrated on a seed no benchmark
  set uses, README), else FOCUS searches; ``focus-gated:T`` uses threshold T.
- ``zoomeye``: the ZoomEye tree search (``focus_engine.zoomeye``), once.
Every FOCUS-family method except ``no-ranking`` runs once per ``n_steps``.

Each item's image is loaded once and every run answers it; each record is
appended to records.jsonl when it is made (``records``), so a cut-off run
resumes; per-question records and per-run metrics (``metrics.summarize``)
land in results.json, and a plot of accuracy against forward passes in a PNG.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import torch
from PIL import Image, ImageDraw

from ..answer import answer_plain, parse_option
from ..config import FocusConfig
from ..errors import FocusConfigError, FocusError
from ..pipeline import FocusPipeline
from ..zoomeye import ZoomEye
from .datasets import BenchItem
from .metrics import peak_cell_hit, summarize
from .records import RECORDS_GLOB, RUN_FILE, RecordStore, read_records, records_by_run
from .world import scalable_font

ProgressFn = Callable[[int, int, str], None]
METHOD_NAMES = ("vanilla", "focus", "random", "no-ranking", "keys", "layers:A-B", "focus-shared", "focus-gated[:T]",
                "zoomeye")
GATED_THRESHOLD = 0.55
"""focus-gated's gate_threshold (FocusConfig.gate_threshold), calibrated as the README says."""
RESULTS_FILE = "results.json"
PLOT_FILE = "accuracy_vs_forward_passes.png"


# ------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """A named way of answering: ``vanilla`` or FOCUS with config overrides."""

    name: str
    kind: str  # "vanilla" | "focus" | "zoomeye"
    overrides: tuple[tuple[str, Any], ...] = ()
    sweeps_n_steps: bool = True

    def config(self, base: FocusConfig, n_steps: int | None) -> FocusConfig:
        updates = dict(self.overrides)
        if self.sweeps_n_steps and n_steps is not None:
            updates["n_steps"] = n_steps
        return dataclasses.replace(base, **updates)


def parse_method(name: str) -> Method:
    """A ``Method`` from its name (see the module docstring)."""
    name = name.strip().lower()
    fixed = {
        "vanilla": Method("vanilla", "vanilla", sweeps_n_steps=False),
        "focus": Method("focus", "focus"),
        "random": Method("random", "focus", (("source", "random"),)),
        "keys": Method("keys", "focus", (("source", "keys"),)),
        "no-ranking": Method("no-ranking", "focus", (("n_steps", 1), ("overrun", False)), sweeps_n_steps=False),
        "focus-shared": Method("focus-shared", "focus", (("map_prompt", "question"),)),
        "focus-gated": Method("focus-gated", "focus", (("map_prompt", "question"), ("gate_threshold", GATED_THRESHOLD))),
        "zoomeye": Method("zoomeye", "zoomeye", sweeps_n_steps=False),
    }
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"focus-gated:([0-9.]+)", name)
    if match:
        overrides = (("map_prompt", "question"), ("gate_threshold", float(match.group(1))))
        return Method(name, "focus", overrides)
    match = re.fullmatch(r"layers:(\d+)-(\d+)", name)
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        if start >= end:
            raise FocusConfigError(f"method {name!r}: the layer range needs start < end (half-open [start, end))")
        return Method(name, "focus", (("layers", (start, end)),))
    raise FocusConfigError(f"unknown method {name!r}; use {', '.join(METHOD_NAMES)}")


def parse_methods(names: str | Sequence[str | Method]) -> list[Method]:
    """Methods from a comma-separated string or a list of names / Methods;
    duplicates dropped."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    methods = [p if isinstance(p, Method) else parse_method(p) for p in parts if isinstance(p, Method) or p.strip()]
    if not methods:
        raise FocusConfigError("no methods given; use e.g. vanilla,focus")
    return list({m.name: m for m in methods}.values())


# ------------------------------------------------------------- answer parse
MME_ANSWER_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                       "The best option isThe correct option is", "Best answer:Best option:")
"""As its evaluation has them: two pairs run together there (missing commas),
kept so that answers are read exactly as its published scores read them."""


def mme_choice(answer: str, options: Sequence[str]) -> int | None:
    """MME-RealWorld's own reading of an answer (its evaluation/
    eval_your_results.py, restated): its answer prefixes removed, a long
    answer without a capital A-E is nothing, else the first capital A-E
    anywhere, else the option whose text contains the answer."""
    letters = string.ascii_uppercase[: len(options)]
    text = answer.strip()
    for prefix in MME_ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search(f"[{letters}]", text)
    if match is not None:
        return letters.index(match.group(0))
    if len(text.split()) > 10:
        return None
    lowered = text.strip().lower()
    for index, option in enumerate(options):
        if lowered and lowered in option.lower():
            return index
    return None


def choose_option(answer: str, options: Sequence[str]) -> int | None:
    """Index of the option a free-text answer picks, or None.

    In order: a leading letter or option text (``parse_option``); "answer is
    B" / "option (B)" / "(B)"; else the one option whose text appears as
    whole words (an option inside a longer one that also appears, e.g. "red"
    in "dark red", does not count). Ambiguous answers give None."""
    if not options:
        return None
    letter = parse_option(answer, options)
    letters = string.ascii_uppercase[: len(options)]
    if letter is None:
        # "answer is B", "Answer: (B)", MME-RealWorld's own "The best answer is: E"
        match = re.search(rf"(?i:answer|option|choice)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", answer) or re.search(
            rf"\(([{letters}])\)", answer
        )
        letter = match.group(1) if match else None
    if letter is not None:
        return letters.index(letter)
    text = answer.lower()
    found = [
        i for i, option in enumerate(options)
        if re.search(rf"(?<!\w){re.escape(option.lower().strip())}(?!\w)", text)
    ]
    found = [i for i in found if not any(j != i and options[i].lower() in options[j].lower() for j in found)]
    return found[0] if len(found) == 1 else None


# ------------------------------------------------------------------ results
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


# ------------------------------------------------------------------ progress
class TextProgress:
    """``[bench] |#####-----| 12/40 focus@4 world_0_00003`` on one stderr line."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int, message: str) -> None:
        filled = round(self.width * done / max(total, 1))
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r[bench] |{bar}| {done}/{total} {elapsed:6.1f}s {message[:60]:<60}{end}")
        self.stream.flush()


def _progress_fn(progress: ProgressFn | bool | None) -> ProgressFn:
    if progress is False:
        return lambda done, total, message: None
    if progress is None or progress is True:
        return TextProgress()
    return progress


# ------------------------------------------------------------------- runner
def run_benchmark(
    mllm: Any,
    items: Sequence[BenchItem],
    methods: str | Sequence[str | Method] = ("vanilla", "focus"),
    config: FocusConfig | None = None,
    n_steps_list: Sequence[int] = (4,),
    progress: ProgressFn | bool | None = None,
    *,
    out_dir: str | Path | None = None,
    use_gt_targets: bool = False,
    peak_margin: float = 0.0,
    resume: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> BenchmarkResult:
    """Answer every item with every method (and ``n_steps``); return the
    per-question records and per-run metrics, and write ``results.json`` and
    the plot to ``out_dir`` if given.

    With ``out_dir``, each record is appended to ``records.jsonl`` as soon as
    it is made and the report is made from that file; ``resume`` continues a
    run there that was cut off, skipping the questions already answered
    (``records.RecordStore``). ``shard=(rank, n)``: this process answers
    every n-th question from ``rank`` into its own records file (one process
    of a run launched with ``accelerate launch``); the report is then made by
    the caller once every process is done (``write_report``).

    ``use_gt_targets`` gives FOCUS the dataset's target names instead of
    extracting them (where the dataset has names). ``progress``: None or
    True for a text bar on stderr, False for none, or ``fn(done, total, msg)``.
    """
    if not items:
        raise FocusConfigError("no benchmark items to run; check the dataset path and --limit")
    base = config or FocusConfig()
    chosen = parse_methods(methods)
    steps = sorted({int(n) for n in n_steps_list})
    if not steps or steps[0] < 1:
        raise FocusConfigError(f"n_steps_list={list(n_steps_list)}: give one or more values >= 1")
    runs = [
        RunResult(m.name, n if m.sweeps_n_steps else None, m.config(base, n).to_dict())
        for m in chosen
        for n in (steps if m.sweeps_n_steps else [None])
    ]
    _check_layers(mllm, chosen)
    settings = {"n_steps_list": steps, "use_gt_targets": use_gt_targets, "peak_margin": peak_margin,
                "methods": [m.name for m in chosen], "family": getattr(mllm, "family", "")}
    model_name = str(getattr(mllm, "name", ""))
    store = None
    if out_dir is not None:
        store = RecordStore(out_dir, {
            "model": model_name, "settings": settings, "items": [item.id for item in items],
            "runs": [{"label": r.label, "method": r.method, "n_steps": r.n_steps, "config": r.config} for r in runs],
        }, resume=resume, shard=shard)
    rank, world = shard
    mine = list(items)[rank::world]
    plans = [(run, next(m for m in chosen if m.name == run.method)) for run in runs]
    say = _progress_fn(progress)
    total, done = len(mine) * len(runs), 0
    for item in mine:
        todo = [(run, method) for run, method in plans if store is None or (run.label, item.id) not in store.done]
        done += len(plans) - len(todo)
        if not todo:
            continue
        try:
            image: Image.Image | FocusError = item.load_image()
        except FocusError as exc:  # one unreadable image is an error record, not the end of the run
            image = exc
        for run, method in todo:
            say(done, total, f"{run.label} {item.id}")
            record = _answer_item(mllm, item, image, method, base, run.n_steps, use_gt_targets, peak_margin)
            if store is None:
                run.records.append(record)
            else:
                store.append(run.label, record)
            done += 1
    say(total, total, "done")
    if out_dir is not None:  # the report comes from the records on disk, whoever wrote them
        return write_report(out_dir) if world == 1 else load_result(out_dir)
    for run in runs:
        run.metrics = summarize(run.records)
    return BenchmarkResult(runs=runs, n_items=len(items), datasets=sorted({i.dataset for i in items}),
                           model=model_name, settings=settings)


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


def _check_layers(mllm: Any, methods: Sequence[Method]) -> None:
    """Fail before the first question when a layer range does not fit the model."""
    for method in methods:
        layers = dict(method.overrides).get("layers")
        if layers is not None:
            mllm.check_layers(layers)


def _answer_item(
    mllm: Any, item: BenchItem, image: Image.Image | FocusError, method: Method, base: FocusConfig, n_steps: int | None,
    use_gt_targets: bool, peak_margin: float,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": item.id, "dataset": item.dataset, "category": item.category, "subtype": item.subtype,
        "question": item.question, "options": list(item.options), "correct_index": item.correct_index,
        "gt_names": list(item.target_names), "gt_boxes": [list(b) for b in item.target_boxes],
    }
    if item.meta.get("cycle_category") not in (None, ""):  # HR-Bench: scored per cycle (metrics.official_scores)
        record["cycle"] = str(item.meta["cycle_category"])
    if item.answer_reading == "mme" and item.meta.get("Subtask"):
        record["subtask"] = str(item.meta["Subtask"])
    config = method.config(base, n_steps)
    calls_before = mllm.counter.generate_calls
    started = time.perf_counter()
    try:
        if isinstance(image, FocusError):
            raise image
        if method.kind == "vanilla":
            answer = answer_plain(mllm, image, item.question, item.options, config)
            record.update(answer_text=answer.text, forward_passes=0, ranked_boxes=None, selected_boxes=None)
        elif method.kind == "zoomeye":
            targets = item.target_names if (use_gt_targets and item.target_names) else None
            searched = ZoomEye(mllm, config).run(image, item.question, options=item.options, targets=targets)
            record.update(answer_text=searched.answer, forward_passes=searched.cost.forward_passes,
                          targets=list(searched.targets), ranked_boxes=[list(b) for b in searched.visited],
                          selected_boxes=[list(b) for b in searched.chosen], notes=list(searched.notes))
        else:
            targets = item.target_names if (use_gt_targets and item.target_names) else None
            result = FocusPipeline(mllm, config).run(image, item.question, options=item.options, targets=targets)
            record.update(_focus_fields(result, item, peak_margin))
    except FocusError as exc:
        record.update(answer_text="", error=str(exc), forward_passes=None, ranked_boxes=None, selected_boxes=None)
    except (torch.OutOfMemoryError, MemoryError) as exc:  # one image too large: recorded, and the run goes on
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        record.update(answer_text="", error=f"out of memory: {reason}", forward_passes=None, ranked_boxes=None,
                      selected_boxes=None)
    record["seconds"] = round(time.perf_counter() - started, 4)
    record["generate_calls"] = mllm.counter.generate_calls - calls_before
    if config.answer_scoring == "likelihood" and record["answer_text"] in item.options:
        # the option itself was chosen: no parsing (an option that is a letter would read as one)
        record["chosen_index"] = list(item.options).index(record["answer_text"])
    elif item.answer_reading == "mme":
        record["chosen_index"] = mme_choice(record["answer_text"], item.options) if record["answer_text"] else None
    else:
        record["chosen_index"] = choose_option(record["answer_text"], item.options) if record["answer_text"] else None
    record["correct"] = record["chosen_index"] == item.correct_index
    return record


def _focus_fields(result: Any, item: BenchItem, peak_margin: float) -> dict[str, Any]:
    return {
        "answer_text": result.answer,
        "forward_passes": result.cost.forward_passes,
        "targets": list(result.targets),
        "target_source": result.target_source,
        "question_type": result.question_type,
        "verified": sum(1 for r in result.rois if r.confidence is not None),
        "ranked_boxes": [list(r.box) for r in result.rois],
        "selected_boxes": [list(r.box) for r in result.selected],
        "peak_hits": peak_hits(result.relevance, item.target_names, item.target_boxes, peak_margin),
        "answer_view": result.answer_view.get("mode"),
        "notes": list(result.notes),
        "gate": result.gate,
    }


def peak_hits(
    relevance: Mapping[str, Any], names: Sequence[str], boxes: Sequence[Sequence[int]], margin: float = 0.0
) -> list[bool]:
    """For each GT target, whether its relevance map's highest cell overlaps
    its box (``metrics.peak_cell_hit``).
    A GT target is paired with the map of the same name (case-insensitive);
    failing that, by position when there are as many maps as GT boxes; GT
    targets without a map are left out."""
    maps = list(relevance.values())
    by_name = {str(k).lower(): v for k, v in relevance.items()}
    hits = []
    for index, box in enumerate(boxes):
        name = names[index].lower() if index < len(names) else ""
        rmap = by_name.get(name) or (maps[index] if len(maps) == len(boxes) else None)
        if rmap is not None:
            hits.append(peak_cell_hit(rmap, box, margin))
    return hits


# ------------------------------------------------------------------ outputs
def write_results(result: BenchmarkResult, out_dir: str | Path) -> list[Path]:
    """``results.json`` and the accuracy-vs-forward-passes plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, plot_path = out / RESULTS_FILE, out / PLOT_FILE
    json_path.write_text(json.dumps(result.to_json(), indent=1))
    plot_accuracy(result).save(plot_path)
    return [json_path, plot_path]


def format_summary(result: BenchmarkResult) -> str:
    """A plain-text table: one row per run."""
    rows = [f"{'run':<22} {'acc %':>6} {'FP/q':>6} {'s/q':>7} {'recall':>7} {'sel.rec':>7} {'peak':>6} {'gated':>6}"]

    def cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    for run in result.runs:
        m = run.metrics
        rows.append(
            f"{run.label:<22} {cell(m['accuracy'], 100):>6} {cell(m['forward_passes']):>6} "
            f"{cell(m['seconds'], digits=2):>7} {cell(m['roi_recall_ranked'], 100):>7} "
            f"{cell(m['roi_recall_selected'], 100):>7} {cell(m['peak_hit_rate'], 100):>6} "
            f"{cell(m.get('gate_answered'), 100):>6}"
        )
    return "\n".join(rows)


SERIES_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
                  (140, 86, 75), (227, 119, 194), (23, 190, 207)]


def _series(result: BenchmarkResult) -> dict[str, list[tuple[float, float, int | None]]]:
    """method -> [(forward passes, accuracy %, n_steps)] in n_steps order."""
    series: dict[str, list[tuple[float, float, int | None]]] = {}
    for run in result.runs:
        acc, passes = run.metrics.get("accuracy"), run.metrics.get("forward_passes")
        if acc is not None and passes is not None:
            series.setdefault(run.method, []).append((float(passes), 100.0 * acc, run.n_steps))
    return series


def _nice_step(span: float) -> float:
    raw = span / 6
    magnitude = 10 ** int(f"{raw:e}".split("e")[1])
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def plot_accuracy(result: BenchmarkResult, size: tuple[int, int] = (960, 640)) -> Image.Image:
    """Accuracy (%) against mean forward passes per question, one line per
    method through its n_steps points (labelled n=...); methods without a
    sweep are single points, vanilla also a dashed horizontal line."""
    width, height = size
    left, right, top, bottom = 90, 230, 60, 80
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = scalable_font(16), scalable_font(13)
    series = _series(result)
    x_max = max([p[0] for pts in series.values() for p in pts] + [1.0]) * 1.1
    step_x = _nice_step(x_max)
    x_max = step_x * -(-x_max // step_x)

    def to_px(fp: float, acc: float) -> tuple[float, float]:
        return (left + fp / x_max * (width - left - right), top + (1 - acc / 100) * (height - top - bottom))

    plot_box = (left, top, width - right, height - bottom)
    draw.rectangle(plot_box, outline="black")
    for acc in range(0, 101, 20):
        _, y = to_px(0, acc)
        draw.line((left, y, width - right, y), fill=(225, 225, 225))
        draw.text((left - 10, y), f"{acc}", fill="black", font=small, anchor="rm")
    tick = 0.0
    while tick <= x_max + 1e-9:
        x, _ = to_px(tick, 0)
        draw.line((x, height - bottom, x, height - bottom + 5), fill="black")
        draw.text((x, height - bottom + 8), f"{tick:g}", fill="black", font=small, anchor="mt")
        tick += step_x
    draw.text(((left + width - right) / 2, height - 30), "forward passes per question (visual search)",
              fill="black", font=font, anchor="mm")
    _vertical_text(image, (28, top + (height - top - bottom) / 2), "accuracy %", font)
    title = f"accuracy vs forward passes - {', '.join(result.datasets)} ({result.n_items} questions)"
    draw.text((left, 25), title, fill="black", font=font, anchor="lm")
    for index, (method, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        pixels = [to_px(fp, acc) for fp, acc, _ in points]
        if method == "vanilla":
            _dashed(draw, (left, pixels[0][1]), (width - right, pixels[0][1]), colour)
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for (x, y), (_, _, n) in zip(pixels, points):
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
            if n is not None:
                draw.text((x + 6, y - 6), f"n={n}", fill=colour, font=small, anchor="ld")
        ly = top + 10 + index * 24
        draw.line((width - right + 15, ly, width - right + 45, ly), fill=colour, width=3)
        draw.text((width - right + 52, ly), method, fill="black", font=font, anchor="lm")
    return image


def _vertical_text(image: Image.Image, centre: tuple[float, float], text: str, font: Any) -> None:
    """``text`` rotated 90 degrees (reading bottom to top), centred at ``centre``."""
    x0, y0, x1, y1 = font.getbbox(text)
    label = Image.new("L", (x1 + 4, y1 + 4), 0)
    ImageDraw.Draw(label).text((2, 2), text, fill=255, font=font)
    label = label.rotate(90, expand=True)
    at = (round(centre[0] - label.width / 2), round(centre[1] - label.height / 2))
    image.paste((0, 0, 0), (*at, at[0] + label.width, at[1] + label.height), label)


def _dashed(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], colour: Any) -> None:
    (x0, y), (x1, _) = start, end
    x = x0
    while x < x1:
        draw.line((x, y, min(x + 8, x1), y), fill=colour, width=2)
        x += 14


__all__ = [
    "BenchmarkResult", "METHOD_NAMES", "Method", "PLOT_FILE", "RESULTS_FILE", "RunResult", "TextProgress",
    "choose_option", "format_summary", "parse_method", "parse_methods", "peak_hits", "plot_accuracy",
    "run_benchmark", "write_results",
]
