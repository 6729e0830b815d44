"""The A/B checks only a real checkpoint can settle (issue 21), in one command.

Each check runs FOCUS twice on the same questions, changing one choice the
paper leaves open or that the project adds, and prints accuracy and forward
passes side by side:

- ``view``: the answer on one union crop vs one crop per target (the paper's
  global-local answer), on the questions that name two or more targets;
- ``layers``: LLaVA-OneVision's layer range, 14..28 (the paper's text) vs
  21..28 (its Tab. 7); other families: their default vs the last half;
- ``extent``: the project's boxes that follow large objects, on vs off;
- ``normalisation``: the residual rows normalised by the target token
  (``target``) vs Fig. 7 read literally (``visual``);
- ``yes_no``: the ids the model's tokenizer gives "Yes"/"No" answers (no
  questions needed): the ids kept, and any shared id that was dropped.

    python benchmarks/real_checkpoint_checks.py --model models/LLM/llava-onevision-qwen2-7b-ov-hf \\
        --data path/to/vstar_bench --limit 50 --out checks_out

Writes ``checks.json`` (every run's metrics) and prints a small table. Every
run uses the paper preset for the model's family and the dataset's kind, the
strict answer reading and ``n_steps`` 4 unless told otherwise (``--preset``,
``--parse``, ``--n-steps``). On the tiny
test models it runs end to end (tests/test_real_checkpoint_checks.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

CHECKS = ("view", "layers", "extent", "normalisation", "yes_no")


def variants(check: str, mllm: Any) -> list[tuple[str, dict[str, Any]]]:
    """The two settings a check compares, as FocusConfig fields."""
    if check == "view":
        return [("union crop", {"answer_crops": "union"}), ("crop per target", {"answer_crops": "per_target"})]
    if check == "layers":
        depth = mllm.num_layers
        if mllm.family == "llava_onevision" and depth == 28:
            return [("layers 14..28 (text)", {"layers": (14, 28)}), ("layers 21..28 (Tab. 7)", {"layers": (21, 28)})]
        return [(f"family default {mllm.default_layers(0.55)}", {}), (f"last half {(depth // 2, depth)}",
                                                                        {"layers": (depth // 2, depth)})]
    if check == "extent":
        return [("paper boxes", {"extent_floor": None}), ("extent boxes", {"extent_floor": 0.3})]
    if check == "normalisation":
        return [("by target token", {"row_normalisation": "target"}),
                ("by image token (Fig. 7 literal)", {"row_normalisation": "visual"})]
    raise ValueError(check)


def yes_no_ids(mllm: Any) -> dict[str, Any]:
    """What the model's tokenizer gives the verification: the ids kept, as tokens."""
    raw = {word: mllm._answer_token_ids(word) for word in ("Yes", "No")}
    kept = mllm.yes_no_token_ids
    tokens = mllm.tokenizer.convert_ids_to_tokens
    return {"yes": tokens(kept[0]), "no": tokens(kept[1]),
            "dropped_shared": tokens(sorted(set(raw["Yes"]) & set(raw["No"])))}


def run_check(
    check: str, mllm: Any, items: list[Any], base: Any, n_steps: int, out: Path, parse: str = "strict"
) -> list[dict[str, Any]]:
    """Both variants of ``check`` on ``items``: one row each."""
    from focus_engine.bench.runner import run_benchmark
    from focus_engine.methods.registry import method_spec

    if check == "view":
        items = [item for item in items if len(item.target_names) >= 2]
        if not items:
            return [{"check": check, "variant": "-", "note": "no question names two or more targets"}]
    focus = method_spec("focus")
    rows = []
    for label, fields in variants(check, mllm):
        spec = dataclasses.replace(focus, name=f"{check}-{len(rows)}", fixed=tuple(fields.items()))
        result = run_benchmark(mllm, items, [spec], base, [n_steps], progress=False, parse=parse,
                               out_dir=out / f"{check}_{len(rows)}")
        metrics = result.runs[0].metrics
        rows.append({"check": check, "variant": label, "questions": len(items), "accuracy": metrics["accuracy"],
                     "forward_passes": metrics["forward_passes"], "roi_recall": metrics["roi_recall_selected"]})
    return rows


def format_table(rows: list[dict[str, Any]], ids: dict[str, Any] | None) -> str:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [f"{'check':<14} {'variant':<32} {'n':>4} {'acc %':>6} {'FP/q':>6} {'recall':>7}"]
    for row in rows:
        fp = row.get("forward_passes")
        lines.append(f"{row['check']:<14} {row['variant']:<32} {row.get('questions', 0):>4} "
                     f"{pct(row.get('accuracy')):>6} {'-' if fp is None else f'{fp:.1f}':>6} "
                     f"{pct(row.get('roi_recall')):>7}" + (f"  {row['note']}" if row.get("note") else ""))
    if ids is not None:
        lines.append(f"yes/no ids: Yes -> {ids['yes']}, No -> {ids['no']}; shared and dropped: {ids['dropped_shared']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (or hub id)")
    parser.add_argument("--data", help="V*Bench folder, HR-Bench TSV or MME-RealWorld JSON (not needed for yes_no)")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, from {', '.join(CHECKS)}")
    parser.add_argument("--limit", type=int, default=50, help="questions per check (default 50)")
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--preset", default="paper", choices=("paper", "default"),
                        help="the settings both variants start from")
    parser.add_argument("--parse", default="strict", choices=("strict", "lenient"),
                        help="strict: only an exact option letter counts (the paper's tables)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", default="real_checkpoint_checks", help="output folder")
    args = parser.parse_args(argv)

    from focus_engine.bench.datasets import detect_kind, load_dataset
    from focus_engine.mllm import load_mllm
    from focus_engine.config import FocusConfig

    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        parser.error(f"unknown checks {unknown}; use {', '.join(CHECKS)}")
    mllm = load_mllm(args.model, device=args.device, dtype=args.precision)
    ids = yes_no_ids(mllm) if "yes_no" in checks else None
    rows: list[dict[str, Any]] = []
    question_checks = [c for c in checks if c != "yes_no"]
    if question_checks:
        if not args.data:
            parser.error("--data is needed for " + ", ".join(question_checks))
        items = load_dataset(args.data, limit=args.limit)
        base = FocusConfig(preset=args.preset, preset_dataset=detect_kind(args.data))  # the preset as chosen
        out = Path(args.out)
        for check in question_checks:
            print(f"[checks] {check} on {len(items)} questions", file=sys.stderr, flush=True)
            rows += run_check(check, mllm, items, base, args.n_steps, out, args.parse)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "checks.json").write_text(json.dumps({"model": args.model, "rows": rows, "yes_no": ids},
                                                           indent=1))
    print(format_table(rows, ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
