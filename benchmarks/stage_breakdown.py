"""Where the time of a FOCUS answer goes: wall time per stage (target
extraction, relevance prefills, ROI proposal, verification, final answer,
everything else) against the plain answer's, on the same questions.

    python benchmarks/stage_breakdown.py --data SET [--model DIR] [--limit 40] [--out breakdown.json]
    python benchmarks/stage_breakdown.py --random-geometry 7b --layers 4 --limit 5   # LLaVA-1.5-7B width, random weights

``--data`` is any dataset ``focus bench run`` reads (default: a synthetic set
of world seed 5 made on the fly); ``--model`` a model folder (default: the
embedded demo model). ``--random-geometry 7b`` builds a random-weight
LLaVA-1.5 with LLaVA-1.5-7B's widths (CLIP ViT-L/14 at 336 px, 4096 hidden,
32 heads, 11008 MLP) and ``--layers`` decoder layers (a 32-layer model does not
fit a small machine; every stage's cost grows with depth alike). Numbers go
in the README and the issue notes, never in tests. ``--method`` names any
method of the registry (default ``focus``); ``--preset`` the config.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

STAGES = ("gate", "prefill", "targets", "relevance", "rois", "ranking", "search", "answer")


def build_random_7b(folder: Path, layers: int) -> Path:
    from focus_engine.testing import build_planted_llava

    return build_planted_llava(folder, seed=0, damping=1.0, neutral_words=False, vision_hidden=1024, vision_layers=2,
                               text_hidden=4096, text_layers=layers, heads=32, kv_heads=32)


def breakdown(mllm: Any, items: list[Any], method: str, config: Any, n_steps: int) -> dict[str, Any]:
    """Mean seconds per question of the plain answer and of ``method``, the
    latter per stage, over ``items``."""
    from focus_engine.methods import make_method

    plain, searched = make_method("vanilla", mllm, config), make_method(method, mllm, config, n_steps)
    plain_s, total_s, passes = [], [], []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for item in items:
        image = item.load_image()
        plain_s.append(plain.run(image, item.question, item.options).cost.seconds)
        result = searched.run(image, item.question, item.options)
        total_s.append(result.cost.seconds)
        passes.append(result.cost.forward_passes)
        for stage in STAGES:
            stages[stage].append(result.cost.stage_seconds.get(stage, 0.0))
    mean = statistics.fmean
    per_stage = {stage: mean(values) for stage, values in stages.items() if any(values)}
    per_stage["other"] = mean(total_s) - sum(per_stage.values())
    return {"questions": len(items), "plain_seconds": mean(plain_s), "method_seconds": mean(total_s),
            "ratio": mean(total_s) / mean(plain_s), "forward_passes": mean(passes), "stage_seconds": per_stage}


def parse_fields(pairs: list[str]) -> dict[str, Any]:
    """``["verify_stop=0.5", "target_reply=direct"]`` -> FocusConfig overrides."""
    fields = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        try:
            fields[name] = json.loads(text)
        except json.JSONDecodeError:
            fields[name] = text
    return fields


def format_breakdown(result: dict[str, Any], method: str) -> str:
    lines = [f"{'stage':<12} {'s/question':>10} {'share':>7} {'x plain':>8}"]
    plain, total = result["plain_seconds"], result["method_seconds"]
    for stage, seconds in result["stage_seconds"].items():
        lines.append(f"{stage:<12} {seconds:>10.4f} {100 * seconds / total:>6.1f}% {seconds / plain:>8.2f}")
    lines.append(f"{method:<12} {total:>10.4f} {100.0:>6.1f}% {result['ratio']:>8.2f}  "
                 f"({result['forward_passes']:.1f} forward passes)")
    lines.append(f"{'plain':<12} {plain:>10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a benchmark set (default: world seed 5 made here)")
    parser.add_argument("--model", help="model folder (default: the embedded demo model)")
    parser.add_argument("--random-geometry", choices=["7b"], help="a random-weight LLaVA-1.5 at 7B widths instead")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of --random-geometry")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--method", default="focus")
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--preset", default="default", choices=("default", "paper"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a FocusConfig field for the searching method (JSON value, else a string); repeatable")
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args(argv)

    import torch

    from focus_engine.bench.datasets import load_dataset
    from focus_engine.bench.world import make_synthetic
    from focus_engine.demo import embedded_model_dir
    from focus_engine.mllm import load_mllm
    from focus_engine.config import FocusConfig

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or str(make_synthetic(Path(tmp) / "set", seed=5, n=args.limit) and Path(tmp) / "set")
        if args.random_geometry:
            folder = build_random_7b(Path(tmp) / "model", args.layers)
        else:
            folder = Path(args.model) if args.model else embedded_model_dir()
        mllm = load_mllm(str(folder), device="cpu", dtype="fp32")
        shorter = {"answer_max_new_tokens": 16, "target_max_new_tokens": 16} if args.random_geometry else {}
        config = FocusConfig(preset=args.preset, **shorter, **parse_fields(args.set))  # what the user chose
        items = load_dataset(data, limit=args.limit)
        result = breakdown(mllm, items, args.method, config, args.n_steps)
    result.update(model=str(args.random_geometry or folder), method=args.method, preset=args.preset)
    print(format_breakdown(result, args.method))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
