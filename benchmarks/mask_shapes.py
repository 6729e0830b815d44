"""How well the MASK of FOCUS's regions follows the objects, per mask shape:
the box mask and the relevance mask at several thresholds
(``focus_engine.masks``), scored against the synthetic world's true object
masks (``world.true_mask``) by mask IoU and cover (``bench.metrics``).

    python benchmarks/mask_shapes.py --data SET [--limit 100] [--thresholds 0.3,0.5,0.7,0.9] [--out masks.json]

``--data`` is a synthetic set (``focus bench make-synthetic``: its
annotations carry the scene's objects); ``--model`` a model folder (default:
the embedded demo model); ``--method`` the method whose selected regions are
masked (default ``focus-find``: FOCUS's regions, box for box, without the
answer). Each question is searched once and every shape is scored on the
same regions. Choose the threshold on a development set, then measure on a
held-out one (docs/benchmarks.md says which seeds were which).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def shape_names(thresholds: list[float]) -> dict[str, tuple[str, float]]:
    """Column name -> (mask shape, threshold)."""
    from focus_engine.masks import RELEVANCE_MASK_THRESHOLD

    shapes = {"box": ("box", RELEVANCE_MASK_THRESHOLD)}
    shapes.update({f"relevance@{t:g}": ("relevance", t) for t in thresholds})
    return shapes


def score_masks(mllm: Any, items: list[Any], method: str, n_steps: int, thresholds: list[float]) -> dict[str, Any]:
    """Per shape, mask mIoU and mean cover over the items with true masks,
    overall and by the question's target count."""
    from focus_engine.bench.metrics import mask_match
    from focus_engine.bench.world import true_mask
    from focus_engine.masks import region_mask
    from focus_engine.methods import make_method

    finder = make_method(method, mllm, None, n_steps)
    shapes = shape_names(thresholds)
    rows = []
    for item in items:
        world = item.meta.get("world")
        image = item.load_image()
        truth = true_mask(world, item.target_boxes, image.size) if isinstance(world, dict) else None
        if truth is None:
            continue
        result = finder.run(image, item.question, item.options)
        scores = {name: mask_match(region_mask(image.size, result.selected, shape, result.relevance, threshold=t),
                                   truth) for name, (shape, t) in shapes.items()}
        rows.append({"id": item.id, "targets": len(item.target_boxes), "scores": scores})
    if not rows:
        raise SystemExit("no question of this set has true masks: make it with `focus bench make-synthetic`")

    def summary(group: list[dict[str, Any]]) -> dict[str, Any]:
        return {name: {k: statistics.fmean(r["scores"][name][k] for r in group) for k in ("iou", "cover")}
                for name in shapes} | {"questions": len(group)}

    counts = sorted({r["targets"] for r in rows})
    return {"questions": len(rows), "all": summary(rows),
            "by_targets": {str(n): summary([r for r in rows if r["targets"] == n]) for n in counts}, "rows": rows}


def format_scores(result: dict[str, Any]) -> str:
    groups = {"all": result["all"], **{f"{n} target(s)": v for n, v in result["by_targets"].items()}}
    names = [name for name in result["all"] if name != "questions"]
    lines = [f"{'mask':<16}" + "".join(f"{g + ' mIoU':>22}{'cover':>8}" for g in groups)]
    for name in names:
        lines.append(f"{name:<16}" + "".join(f"{100 * v[name]['iou']:>21.1f}%{100 * v[name]['cover']:>7.1f}%"
                                             for v in groups.values()))
    lines.append("questions: " + ", ".join(f"{g} {v['questions']}" for g, v in groups.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a synthetic set (focus bench make-synthetic)")
    parser.add_argument("--model", help="model folder (default: the embedded demo model)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--method", default="focus-find")
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--thresholds", default="0.3,0.5,0.7,0.9",
                        help="the relevance mask's thresholds, comma-separated")
    parser.add_argument("--out", help="write the numbers (and each question's) as JSON here")
    args = parser.parse_args(argv)

    import torch

    from focus_engine.bench.datasets import load_dataset
    from focus_engine.demo import embedded_model_dir
    from focus_engine.mllm import load_mllm

    torch.manual_seed(0)
    folder = Path(args.model) if args.model else embedded_model_dir()
    mllm = load_mllm(str(folder), device="cpu", dtype="fp32")
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    result = score_masks(mllm, load_dataset(args.data, limit=args.limit), args.method, args.n_steps, thresholds)
    result.update(model=str(folder), method=args.method, data=args.data)
    print(format_scores(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
