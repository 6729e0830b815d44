"""Run methods over benchmark items and keep every answer as a record.

The methods are the registry's (``focus_engine.methods.registry``: vanilla,
focus, the paper's ablations, focus-shared, focus-gated[:T], zoomeye); every
FOCUS-family method except ``no-ranking`` runs once per ``n_steps``.

Each item's image is loaded once and every run answers it; each record is
appended to records.jsonl when it is made (``records``), so a cut-off run
resumes; the report (``report``: per-question records and per-run metrics in
results.json, the plot of accuracy against forward passes) is made from the
records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from PIL import Image

from ..config import FocusConfig
from ..errors import FocusConfigError, FocusError
from ..masks import MASK_SHAPES, result_mask
from ..methods.registry import METHOD_NAMES, MethodSpec, method_spec, method_specs
from ..methods.setup import make_method
from ..reading import PARSES, read_choice
from .datasets import BenchItem
from .metrics import mask_match, peak_cell_hit, summarize
from .records import RecordStore
from .world import true_mask
from .report import (
    RESULTS_FILE,
    BenchmarkResult,
    RunResult,
    format_summary,
    load_result,
    write_report,
    write_results,
)

ProgressFn = Callable[[int, int, str], None]


def tqdm_progress() -> ProgressFn:
    """A tqdm bar on stderr as a ``progress(done, total, message)`` function."""
    from tqdm.auto import tqdm

    bar: Any = None

    def update(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="[bench]", unit="answer", dynamic_ncols=True)
        bar.update(done - bar.n)
        bar.set_postfix_str(message[:60], refresh=False)
        if done >= total:
            bar.close()

    return update


def _progress_fn(progress: ProgressFn | bool | None) -> ProgressFn:
    if progress is False:
        return lambda done, total, message: None
    if progress is None or progress is True:
        return tqdm_progress()
    return progress


# ------------------------------------------------------------------- runner
def run_benchmark(
    mllm: Any,
    items: Sequence[BenchItem],
    methods: str | Sequence[str | MethodSpec] = ("vanilla", "focus"),
    config: FocusConfig | None = None,
    n_steps_list: Sequence[int] = (FocusConfig.n_steps,),
    progress: ProgressFn | bool | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
    out_dir: str | Path | None = None,
    use_gt_targets: bool = False,
    peak_margin: float = 0.0,
    resume: bool = False,
    shard: tuple[int, int] = (0, 1),
    parse: str = "lenient",
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

    Each run's config is built once, before the first question, by
    ``methods.setup.run_config`` from ``config`` (a ``FocusConfig`` whose
    changed fields count as set) and ``settings`` (fields by name, the
    ``preset`` and ``preset_dataset``), and recorded as the method runs with
    it (``runs[].config``); ``say`` gets one line per run saying its preset.

    ``use_gt_targets`` gives the searches the dataset's target names instead
    of extracting them (where the dataset has names). ``parse``: ``lenient``
    (the dataset's reading of an answer) or ``strict`` (only an exact option
    letter counts, as the paper scores). ``progress``: None or True for a
    tqdm bar on stderr, False for none, or ``fn(done, total, msg)``.
    """
    if not items:
        raise FocusConfigError("no benchmark items to run; check the dataset path and --limit")
    if parse not in PARSES:
        raise FocusConfigError(f"parse={parse!r}: use one of {', '.join(PARSES)}")
    chosen, given = dict(settings or {}), config or FocusConfig()
    plans = _plans(mllm, methods, n_steps_list, config, chosen)
    if say is not None:
        from ..presets import describe_preset

        runs_by_preset: dict[str, list[str]] = {}
        for run, method in plans:
            runs_by_preset.setdefault(describe_preset(method.config, mllm.family), []).append(run.label)
        for described, labels in runs_by_preset.items():
            say(f"preset: {described} ({', '.join(labels)})")
    settings = {"n_steps_list": sorted({int(n) for n in n_steps_list}), "use_gt_targets": use_gt_targets,
                "parse": parse, "preset": chosen.get("preset", given.preset),
                "preset_dataset": chosen.get("preset_dataset", given.preset_dataset),
                "peak_margin": peak_margin, "methods": list(dict.fromkeys(run.method for run, _ in plans)),
                "family": getattr(mllm, "family", "")}
    model_name = str(getattr(mllm, "name", ""))
    store = None if out_dir is None else RecordStore(out_dir, {
        "model": model_name, "settings": settings, "items": [item.id for item in items],
        "runs": [{"label": r.label, "method": r.method, "n_steps": r.n_steps, "config": r.config} for r, _ in plans],
    }, resume=resume, shard=shard)
    rank, world = shard
    _answer_all(mllm, list(items)[rank::world], plans, store, _progress_fn(progress),
                use_gt_targets=use_gt_targets, peak_margin=peak_margin, parse=parse)
    if out_dir is not None:  # the report comes from the records on disk, whoever wrote them
        return write_report(out_dir) if world == 1 else load_result(out_dir)
    for run, _ in plans:
        run.metrics = summarize(run.records)
    return BenchmarkResult(runs=[run for run, _ in plans], n_items=len(items),
                           datasets=sorted({i.dataset for i in items}), model=model_name, settings=settings)


def _answer_all(
    mllm: Any, items: Sequence[BenchItem], plans: Sequence[tuple[RunResult, Any]], store: RecordStore | None,
    say: ProgressFn, **answer_options: Any,
) -> None:
    """Every item answered by every run not yet in ``store``: each image
    loaded once, each record kept as it is made (in ``store``, else in its run)."""
    total, done = len(items) * len(plans), 0
    for item in items:
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
            record = answer_item(mllm, item, image, method, **answer_options)
            if store is None:
                run.records.append(record)
            else:
                store.append(run.label, record)
            done += 1
    say(total, total, "done")


def _plans(
    mllm: Any, methods: str | Sequence[str | MethodSpec], n_steps_list: Sequence[int], config: FocusConfig | None,
    settings: Mapping[str, Any],
) -> list[tuple[RunResult, Any]]:
    """One run per method and ``n_steps`` (once for a method that does not
    sweep it), each with its method built: a setting the method cannot take,
    or a layer range that does not fit the model, fails here, before the
    first question. The run records the config its method runs with."""
    specs = method_specs(methods)
    steps = sorted({int(n) for n in n_steps_list})
    if not steps or steps[0] < 1:
        raise FocusConfigError(f"n_steps_list={list(n_steps_list)}: give one or more values >= 1")
    plans = []
    for spec in specs:
        for n in steps if spec.sweeps_n_steps else [None]:
            method = make_method(spec, mllm, config, n, **settings)
            plans.append((RunResult(spec.name, n, method.config.to_dict()), method))
    return plans


def answer_item(
    mllm: Any, item: BenchItem, image: Image.Image | FocusError, method: Any, use_gt_targets: bool = False,
    peak_margin: float = 0.0, parse: str = "lenient",
) -> dict[str, Any]:
    """One question answered by ``method`` (a ``methods.base.Method``) as a
    record: the item's fields, the result's (``to_record``), the chosen
    option as the item's benchmark reads it, and whether it is right. An
    engine error or running out of memory on this question is an error
    record, and the run goes on."""
    record = _item_fields(item)
    calls_before, started = mllm.counter.generate_calls, time.perf_counter()
    try:
        if isinstance(image, FocusError):
            raise image
        targets = item.target_names if (use_gt_targets and item.target_names) else None
        result = method.run(image, item.question, options=item.options, targets=targets)
        record.update(result.to_record())
        if getattr(result, "relevance", None) is not None:  # the methods that read maps
            record["peak_hits"] = peak_hits(result.relevance, item.target_names, item.target_boxes, peak_margin)
        if record.get("selected_boxes") is not None and isinstance(item.meta.get("world"), dict):
            truth = true_mask(item.meta["world"], item.target_boxes, image.size)
            if truth is not None:
                record["mask_scores"] = region_mask_scores(result, image.size, truth)
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
    if method.config.answer_scoring == "likelihood" and record["answer_text"] in item.options:
        # the option itself was chosen: no parsing (an option that is a letter would read as one)
        record["chosen_index"] = list(item.options).index(record["answer_text"])
    else:
        record["chosen_index"] = read_choice(record["answer_text"], item.options, item.answer_reading, parse)
    record["correct"] = record["chosen_index"] == item.correct_index
    return record


def _item_fields(item: BenchItem) -> dict[str, Any]:
    """What a record keeps of its benchmark item."""
    record: dict[str, Any] = {
        "id": item.id, "dataset": item.dataset, "category": item.category, "subtype": item.subtype,
        "question": item.question, "options": list(item.options), "correct_index": item.correct_index,
        "gt_names": list(item.target_names), "gt_boxes": [list(b) for b in item.target_boxes],
    }
    if item.meta.get("cycle_category") not in (None, ""):  # HR-Bench: scored per cycle (metrics.official_scores)
        record["cycle"] = str(item.meta["cycle_category"])
    if item.answer_reading == "treebench":  # scored per Perception/Reasoning subtask (metrics.official_scores)
        record["treebench_group"] = str(item.meta.get("group", ""))
    if item.answer_reading == "mme" and item.meta.get("Subtask"):
        record["subtask"] = str(item.meta["Subtask"])
    return record


def region_mask_scores(result: Any, size: tuple[int, int], truth: Any) -> dict[str, dict[str, float]]:
    """Per mask shape (``masks.MASK_SHAPES``), ``metrics.mask_match`` of the
    MASK of the result's selected regions against the true mask: what a
    node's MASK output would score on this question."""
    return {shape: {k: round(v, 6) for k, v in mask_match(result_mask(result, size, shape), truth).items()}
            for shape in MASK_SHAPES}


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


__all__ = [
    "BenchmarkResult", "METHOD_NAMES", "MethodSpec", "RESULTS_FILE", "RunResult", "format_summary", "load_result",
    "method_spec", "method_specs", "peak_hits", "run_benchmark", "tqdm_progress", "write_report", "write_results",
]
