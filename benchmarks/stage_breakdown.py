"""Where the time of a FOCUS answer goes: wall time per stage (target
extraction, relevance prefills, ROI proposal, verification, final answer,
everything else) against the plain answer's, on the same questions, with
each image prefilled once (``reuse_prefixes``, the default) and with every
prompt prefilled whole, side by side in one run.

    python benchmarks/stage_breakdown.py --data SET [--model DIR] [--limit 40] [--out breakdown.json]
    python benchmarks/stage_breakdown.py --random-geometry 7b --layers 4 --limit 5   # LLaVA-1.5-7B width, random weights

``--data`` is any dataset ``focus bench run`` reads (default: a synthetic set
of world seed 5 made on the fly); ``--model`` a model folder (default: the
embedded demo model). ``--random-geometry 7b`` builds a random-weight
LLaVA-1.5 with LLaVA-1.5-7B's widths (CLIP ViT-L/14 at 336 px, 4096 hidden,
32 heads, 11008 MLP) and ``--layers`` decoder layers (a 32-layer model does not
fit a small machine; every stage's cost grows with depth alike). Numbers go
in the docs and the issue notes, never in tests. ``--method`` names any
method of the registry (default ``focus``); ``--preset`` the config;
``--reuse on|off`` runs one side only.

Each question is answered plainly, then by the method with reuse off and on,
the two in alternating order (the second run of a pair is not favoured by
the first). Reported per side: seconds per stage and their ratio to the
plain answer, accuracy, search forward passes, peak memory, the tokens
decoded per question (target reply, answer), the ratio on one-target and on
two-target questions apart, and how many answers and selected boxes the two
sides share.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

STAGES = ("gate", "prefill", "targets", "relevance", "rois", "ranking", "search", "answer")
SIDES = {"off": False, "on": True}
"""The two sides of the comparison: ``reuse_prefixes`` off (every prompt
prefilled whole) and on (each image prefilled once)."""


def build_random_7b(folder: Path, layers: int) -> Path:
    from focus_engine.testing import build_planted_llava

    return build_planted_llava(folder, seed=0, damping=1.0, neutral_words=False, vision_hidden=1024, vision_layers=2,
                               text_hidden=4096, text_layers=layers, heads=32, kv_heads=32)


def breakdown(mllm: Any, items: list[Any], method: str, config: Any, n_steps: int,
              sides: tuple[str, ...] = tuple(SIDES)) -> dict[str, Any]:
    """Per side (``sides``), mean seconds per question of ``method`` by
    stage against the plain answer's, over ``items``, with the accuracy,
    passes, memory and decoded tokens."""
    from focus_engine.methods import make_method
    from focus_engine.reading import read_choice

    plain = make_method("vanilla", mllm, config)
    searched = {side: make_method(method, mllm, dataclasses.replace(config, reuse_prefixes=SIDES[side]), n_steps)
                for side in sides}
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    plain_s = []
    for index, item in enumerate(items):
        image = item.load_image()
        plain_s.append(plain.run(image, item.question, item.options).cost.seconds)
        for side in (sides if index % 2 == 0 else sides[::-1]):
            result = searched[side].run(image, item.question, item.options)
            cost = result.cost
            rows[side].append({
                "seconds": cost.seconds, "stages": dict(cost.stage_seconds), "passes": cost.forward_passes,
                "peak": cost.peak_memory_bytes, "tokens": dict(cost.stage_decoded_tokens),
                "targets": len(result.targets), "answer": result.answer,
                "selected": [list(r) for r in result.regions],
                "correct": read_choice(result.answer, item.options, item.answer_reading) == item.correct_index,
            })
    mean = statistics.fmean
    plain_mean = mean(plain_s)
    out: dict[str, Any] = {"questions": len(items), "plain_seconds": plain_mean, "sides": {}}
    for side, runs in rows.items():
        per_stage = {stage: mean(r["stages"].get(stage, 0.0) for r in runs) for stage in STAGES}
        per_stage = {stage: seconds for stage, seconds in per_stage.items() if seconds}
        total = mean(r["seconds"] for r in runs)
        per_stage["other"] = total - sum(per_stage.values())
        by_targets = {}
        for count in sorted({r["targets"] for r in runs}):
            picked = [i for i, r in enumerate(runs) if r["targets"] == count]
            plain_part = mean(plain_s[i] for i in picked)
            by_targets[str(count)] = {
                "questions": len(picked), "ratio": mean(runs[i]["seconds"] for i in picked) / plain_part,
                "stage_ratio": {stage: mean(runs[i]["stages"].get(stage, 0.0) for i in picked) / plain_part
                                for stage in per_stage if stage != "other"},
            }
        out["sides"][side] = {
            "method_seconds": total, "ratio": total / plain_mean, "stage_seconds": per_stage,
            "accuracy": mean(float(r["correct"]) for r in runs), "forward_passes": mean(r["passes"] for r in runs),
            "peak_memory_bytes": max(r["peak"] for r in runs),
            "decoded_tokens": {stage: mean(r["tokens"].get(stage, 0) for r in runs) for stage in ("targets", "answer")},
            "by_targets": by_targets,
        }
    if len(rows) == 2:
        off, on = rows["off"], rows["on"]
        out["same_answers"] = sum(a["answer"] == b["answer"] for a, b in zip(off, on))
        out["same_selected_boxes"] = sum(a["selected"] == b["selected"] for a, b in zip(off, on))
    return out


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
    plain = result["plain_seconds"]
    sides = result["sides"]
    head = "".join(f"{'reuse ' + side + ' s/q':>16}{'x plain':>9}" for side in sides)
    lines = [f"{'stage':<12}{head}"]
    stages = list(dict.fromkeys(stage for side in sides.values() for stage in side["stage_seconds"]))
    for stage in stages:
        cells = "".join(f"{sides[s]['stage_seconds'].get(stage, 0.0):>16.4f}"
                        f"{sides[s]['stage_seconds'].get(stage, 0.0) / plain:>9.2f}" for s in sides)
        lines.append(f"{stage:<12}{cells}")
    lines.append(f"{method:<12}" + "".join(f"{sides[s]['method_seconds']:>16.4f}{sides[s]['ratio']:>9.2f}"
                                           for s in sides))
    lines.append(f"{'plain':<12}{plain:>16.4f}")
    for side, r in sides.items():
        split = ", ".join(f"{count} target{'s' if count != '1' else ''}: {v['ratio']:.2f}x ({v['questions']} q)"
                          for count, v in r["by_targets"].items())
        tokens = r["decoded_tokens"]
        lines.append(f"reuse {side}: accuracy {100 * r['accuracy']:.1f} %, {r['forward_passes']:.2f} forward passes, "
                     f"peak {r['peak_memory_bytes'] / 2**20:.0f} MiB, decoded {tokens['targets']:.1f} target + "
                     f"{tokens['answer']:.1f} answer tokens/question; {split}")
    for side, r in sides.items():
        for count, v in r["by_targets"].items():
            stages_line = ", ".join(f"{stage} {ratio:.2f}" for stage, ratio in v["stage_ratio"].items())
            lines.append(f"reuse {side}, {count} target{'s' if count != '1' else ''} (x plain): {stages_line}")
    if "same_answers" in result:
        lines.append(f"the same answer on {result['same_answers']} of {result['questions']} questions, the same "
                     f"selected boxes on {result['same_selected_boxes']}")
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
    parser.add_argument("--reuse", choices=("both", *SIDES), default="both",
                        help="each image prefilled once (on), every prompt whole (off), or both side by side")
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
        sides = tuple(SIDES) if args.reuse == "both" else (args.reuse,)
        result = breakdown(mllm, items, args.method, config, args.n_steps, sides)
    result.update(model=str(args.random_geometry or folder), method=args.method, preset=args.preset)
    print(format_breakdown(result, args.method))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
