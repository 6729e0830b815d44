"""``focus bench ...``: the world spec, synthetic sets, and benchmark runs.

    focus bench world-spec [--out FILE]
    focus bench make-synthetic --seed S --n N --out DIR [--spec FILE]
    focus bench run --data DIR_OR_TSV_OR_JSON [--model PATH] --methods vanilla,focus
                    --n-steps 1,2,4,8 [--limit N] --out DIR
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .cli_flags import add_model_flags, add_setting_flags, check_before_loading, load_model, user_settings
from .config import FocusConfig
from .errors import FocusError, FocusInputError
from .methods.registry import METHOD_NAMES
from .reading import PARSES


def _say(message: str) -> None:
    print(f"[focus] {message}", file=sys.stderr, flush=True)


def _world_spec(path: str | None) -> Any:
    from .bench.world import WorldSpec

    if not path:
        return WorldSpec()
    try:
        return WorldSpec.from_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FocusInputError(f"world spec file {path!r} does not exist; write one with `focus bench world-spec`") from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FocusInputError(f"--n-steps {text!r}: give comma-separated integers, e.g. 1,2,4,8") from None
    if not values:
        raise FocusInputError("--n-steps: give at least one value")
    return values


def cmd_world_spec(args: argparse.Namespace) -> int:
    text = _world_spec(args.spec).to_json()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"wrote    : {args.out}")
    else:
        print(text)
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from .bench.world import make_synthetic

    spec = _world_spec(args.spec)
    _say(f"rendering {args.n} items of seed {args.seed} into {args.out}")
    manifest = make_synthetic(args.out, args.seed, args.n, spec)
    counts = Counter(entry["subtype"] for entry in manifest["items"])
    print(f"items    : {manifest['n']} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    print(f"spec     : {manifest['spec_hash']}")
    print(f"wrote    : {Path(args.out) / 'manifest.json'}")
    return 0


def distributed_state() -> Any:
    """accelerate's process state when this process is one of several
    (``accelerate launch`` and ``torchrun`` start them with torch's elastic
    launcher), else None."""
    import torch
    import torch.distributed

    if not torch.distributed.is_torchelastic_launched():
        return None
    try:
        from accelerate import PartialState
    except ImportError:
        raise FocusError("this run was launched as several processes, which needs accelerate: "
                         "pip install accelerate") from None
    # without CUDA, accelerate would take the processes for one; on the CPU they talk over gloo
    state = PartialState(cpu=not torch.cuda.is_available())
    return state if state.num_processes > 1 else None


def cmd_run(args: argparse.Namespace) -> int:
    from .bench.datasets import detect_kind, load_dataset
    from .presets import DATASETS as PRESET_DATASETS
    from .bench.runner import format_summary, method_specs, run_benchmark, write_report

    methods = method_specs(args.methods)  # bad names fail before the model loads
    n_steps = _int_list(args.n_steps_list)
    settings = user_settings(args)
    check_before_loading(args, methods, settings)  # as do settings a method cannot take
    categories = None if not args.categories else ("all" if args.categories == "all" else args.categories.split(","))
    items = load_dataset(args.data, args.kind, option_seed=args.option_seed, limit=args.limit,
                         image_root=args.image_root, categories=categories)
    state = distributed_state()
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    # one model per process, on that process's device
    device = str(state.device) if state is not None and args.device == "auto" else args.device
    _say(f"{len(items)} questions from {args.data}" + (f"; process {rank} of {world} answers every {world}th"
                                                        if world > 1 else ""))
    if args.model:
        _say(f"loading {args.model}")
    mllm = load_model(args, device, say=print if rank == 0 else lambda message: None)
    parse = args.parse or ("strict" if settings.get("preset") == "paper" or all(m.preset == "paper" for m in methods)
                           else "lenient")  # the paper scores without post-processing
    if rank == 0:
        _say(f"answers read {parse}ly")
    kind = detect_kind(args.data) if args.kind == "auto" else args.kind
    # the paper has settings for its three benchmarks; any other (TreeBench) takes its "other" row
    settings.setdefault("preset_dataset", kind if kind in PRESET_DATASETS else "other")
    result = run_benchmark(
        mllm, items, methods, None, n_steps, progress=None, out_dir=args.out,
        use_gt_targets=args.gt_targets, peak_margin=args.peak_margin, resume=args.resume, shard=(rank, world),
        parse=parse, settings=settings, say=_say if rank == 0 else None,
    )
    if state is not None:
        state.wait_for_everyone()  # every shard's records are on disk: the main process reports
        if not state.is_main_process:
            return 0
        result = write_report(args.out)
    print(format_summary(result))
    _print_written(Path(args.out))
    return 0


def _print_written(out: Path) -> None:
    """The files a run or a report wrote: results, records, the plot."""
    from .bench.plot import PLOT_STEM

    print(f"wrote    : {out / 'results.json'} (records: {out}/records*.jsonl)")
    for suffix in (".png", ".svg"):
        if (out / f"{PLOT_STEM}{suffix}").is_file():
            print(f"wrote    : {out / f'{PLOT_STEM}{suffix}'}")


def cmd_report(args: argparse.Namespace) -> int:
    from .bench.report import format_summary, write_report

    result = write_report(args.out)
    print(format_summary(result))
    _print_written(Path(args.out))
    return 0


def add_bench_commands(sub: Any) -> None:
    """Register ``focus bench`` and its subcommands on the top-level parser."""
    bench = sub.add_parser("bench", help="synthetic fine-grained VQA world and benchmark runs")
    commands = bench.add_subparsers(dest="bench_command", required=True)

    spec = commands.add_parser("world-spec", help="print (or write) the world's default spec as JSON")
    spec.add_argument("--out", help="write the JSON here instead of printing it")
    spec.add_argument("--spec", help="start from this spec file (normalised and validated)")
    spec.set_defaults(func=cmd_world_spec)

    make = commands.add_parser("make-synthetic", help="render a synthetic set in V*Bench's folder layout")
    make.add_argument("--seed", type=int, required=True, help="the set's seed (same seed = identical files)")
    make.add_argument("--n", type=int, required=True, help="number of questions")
    make.add_argument("--out", required=True, help="output folder")
    make.add_argument("--spec", help="world spec JSON (default: the built-in spec)")
    make.set_defaults(func=cmd_make_synthetic)

    run = commands.add_parser("run", help="run vanilla / FOCUS / ablations on a benchmark")
    run.add_argument("--data", required=True, help="V*Bench-layout folder, HRBench .tsv, MME-RealWorld JSON or TreeBench.tsv")
    run.add_argument("--kind", default="auto", choices=["auto", "vstar", "hrbench", "mme", "treebench"])
    run.add_argument("--methods", default="vanilla,focus",
                     help=f"comma-separated: {', '.join(METHOD_NAMES)}")
    run.add_argument("--n-steps", dest="n_steps_list", default=str(FocusConfig.n_steps),
                     help="comma-separated verification budgets, e.g. 1,2,4,8 (default "
                          f"{FocusConfig.n_steps}); each FOCUS-family method runs once per budget")
    run.add_argument("--limit", type=int, help="only the first N questions")
    run.add_argument("--categories", help="V*Bench category folders, comma-separated, or 'all' (default: the "
                                          "standard direct_attributes and relative_position)")
    run.add_argument("--image-root", help="MME-RealWorld: the folder of its images (default: beside the JSON)")
    run.add_argument("--out", default="focus_bench_out", help="output folder (default: focus_bench_out)")
    run.add_argument("--gt-targets", action="store_true", help="give FOCUS the dataset's target names")
    run.add_argument("--peak-margin", type=float, default=0.0, help="px tolerance of the relevance-peak hit")
    run.add_argument("--option-seed", type=int, default=0, help="shuffle of V*Bench options (correct-first files)")
    add_setting_flags(run, dataset_default="the detected kind")
    run.add_argument("--parse", choices=PARSES,
                     help="lenient: the dataset's reading of an answer; strict: only an exact option letter counts "
                          "(the paper's scoring, 'no post-processing'). Default: strict for the paper preset "
                          "(--preset paper, or only focus-paper methods), else lenient")
    add_model_flags(run, several_devices=True)
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out that was cut off, skipping the questions it has answered")
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="the summary, results.json and plot of a run, from its records")
    report.add_argument("--out", default="focus_bench_out", help="the run's folder (default: focus_bench_out)")
    report.set_defaults(func=cmd_report)
