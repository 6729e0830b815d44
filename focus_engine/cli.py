"""The ``focus`` command: ``focus run`` on your model and image, ``focus demo``
on the embedded default model and a bundled scene, ``focus bench`` for the
synthetic world and benchmark runs."""

from __future__ import annotations

import argparse
import json
import logging
import re
import string
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from .config import ATTENTIONS, MAP_PROMPTS, PRECISIONS, QUANTIZATIONS, RELEVANCE_SOURCES, FocusConfig
from .errors import FocusError
from .methods.registry import METHOD_NAMES
from .presets import DATASETS, PRESETS

PREVIEW_MAX_SIDE = 2048
"""Overlays and box drawings are shrunk to this long side; the mask is not."""


def _progress(message: str) -> None:
    print(f"[focus] {message}", file=sys.stderr, flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "target"


def write_outputs(result: Any, image: Image.Image, out: Path) -> list[Path]:
    """result.json and the mask of the regions the answer used; for FOCUS
    also a heatmap overlay per target, the ROIs drawn and a summary figure."""
    from .methods.focus import FocusResult
    from .render import draw_rois, heatmap_overlay, roi_mask, summary_figure

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "result.json", out / "roi_mask.png"]
    written[0].write_text(json.dumps(result.to_json(), indent=1))
    mask = roi_mask(image.size, result.regions)
    Image.fromarray((mask * 255).astype("uint8"), mode="L").save(written[1])
    if isinstance(result, FocusResult):
        for target, rmap in result.relevance.items():
            written.append(out / f"heatmap_{_slug(target)}.png")
            heatmap_overlay(image, rmap, max_side=PREVIEW_MAX_SIDE).save(written[-1])
        written.append(out / "rois.png")
        draw_rois(image, result.rois, result.selected, max_side=PREVIEW_MAX_SIDE).save(written[-1])
        written.append(out / "summary.png")
        summary_figure(image, result).save(written[-1])
    return written


def _method_from_args(args: argparse.Namespace, mllm: Any) -> Any:
    """The method ``--method`` names (``--gate T``: focus-gated:T), with the
    run's options on top of the ``--preset``."""
    from .methods.registry import method_spec

    from .presets import describe_preset, preset_config

    name = f"focus-gated:{args.gate}" if args.gate is not None else args.method
    config = preset_config(args.preset, mllm.family, args.preset_dataset, n_steps=args.n_steps, source=args.source,
                           layers=tuple(args.layers) if args.layers else None, map_prompt=args.map_prompt,
                           **_verification_options(args))
    _progress(f"preset: {describe_preset(config, mllm.family)}")
    return method_spec(name).make(mllm, config, args.n_steps)


def _print_summary(result: Any, written: Sequence[Path]) -> None:
    print(f"method   : {result.method}")
    print(f"question : {result.question}")
    if result.options:
        for letter, option in zip(string.ascii_uppercase, result.options):
            print(f"           {letter}. {option}")
    for label, text in result.describe():
        print(f"{label:<9}: {text}")
    print(f"answer   : {result.answer}")
    cost = result.cost
    print(
        f"cost     : {cost.forward_passes} forward passes, {cost.seconds:.2f} s, "
        f"peak memory {cost.peak_memory_bytes / 2**20:.0f} MiB ({cost.peak_memory_kind})"
    )
    for path in written:
        print(f"wrote    : {path}")


def cmd_run(args: argparse.Namespace) -> int:
    from .images import to_pil_rgb
    from .methods.registry import method_spec

    try:
        image = Image.open(args.image)
        image.load()
    except FileNotFoundError:
        raise FocusError(f"image file {args.image!r} does not exist") from None
    except OSError as exc:
        raise FocusError(f"cannot read image {args.image!r}: {exc}") from None
    pil = to_pil_rgb(image)
    method_spec(args.method)  # a bad name fails before the model loads
    if args.model:
        from .mllm import load_mllm

        _progress(f"loading {args.model}")
        mllm = load_mllm(args.model, device=args.device, dtype=args.precision, attn_implementation=args.attention,
                         quantization=args.quantization)
    else:
        from .demo import load_demo_model

        mllm = load_demo_model(args.quantization)
    result = _method_from_args(args, mllm).run(pil, args.question, options=args.options, targets=args.targets,
                                               progress=_progress)
    _print_summary(result, write_outputs(result, pil, Path(args.out)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .boxes import coverage
    from .demo import DEMO_DISCLAIMER, demo_item, embedded_model_dir
    from .methods.vanilla import Vanilla
    from .mllm import load_mllm
    from .methods.focus import FocusPipeline
    from .reading import choose_option
    from .render import comparison_figure

    started = time.perf_counter()
    folder = Path(args.model) if args.model else embedded_model_dir()
    _progress(f"model: {folder}")
    mllm = load_mllm(str(folder), device="cpu", dtype="fp32")
    item = demo_item()
    image, question, options = item.image, item.question, item.options
    truth = options.index(item.answer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image.save(out / "scene.png")
    config = FocusConfig(n_steps=args.n_steps)
    vanilla = Vanilla(mllm, config).run(image, question, options)
    result = FocusPipeline(mllm, config).run(image, question, options=options, progress=_progress)

    def verdict(answer: str) -> str:  # judged as `focus bench` judges (a letter, the option's text, ...)
        return "right" if choose_option(answer, options) == truth else "wrong"

    figure = comparison_figure(
        image, result, f"plain answer on the whole image: {vanilla.answer.strip()!r} ({verdict(vanilla.answer)})",
        f"FOCUS answer on the ROI: {result.answer.strip()!r} ({verdict(result.answer)})")
    figure.save(out / "comparison.png")
    written = [out / "scene.png", out / "comparison.png", *write_outputs(result, image, out)]
    if not args.model:
        print(DEMO_DISCLAIMER)
    box = item.target_boxes[0]
    print(f"scene    : {image.width}x{image.height}, {len(item.objects)} objects; the {item.target_names[0]} "
          f"is {box[2] - box[0]}x{box[3] - box[1]} px at {list(box)}")
    print(f"truth    : {string.ascii_uppercase[truth]}. {item.answer}")
    print(f"vanilla  : {vanilla.answer.strip()!r} ({verdict(vanilla.answer)}; one answer on the whole image)")
    _print_summary(result, written)
    print(f"FOCUS    : {verdict(result.answer)}")
    best = result.selected[0].box if result.selected else None
    covered = best is not None and coverage(best, box) >= 1.0
    print(f"located  : the chosen ROI {'covers' if covered else 'does NOT cover'} the {item.target_names[0]}")
    print(f"total    : {time.perf_counter() - started:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="focus", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log model loading details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a question about an image with FOCUS (or another --method)")
    run.add_argument("--model", help="model folder or Hugging Face hub id (default: the embedded demo model, "
                                      "which knows only the synthetic world)")
    run.add_argument("--method", default="focus", help=f"how to answer: {', '.join(METHOD_NAMES)} (default: focus)")
    run.add_argument("--image", required=True, help="image file")
    run.add_argument("--question", required=True)
    run.add_argument("--options", nargs="+", help="multiple-choice options (answer is a letter)")
    run.add_argument("--targets", nargs="+", help="skip target extraction: the objects to look for")
    run.add_argument("--out", default="focus_out", help="output folder (default: focus_out)")
    run.add_argument("--device", default="auto")
    run.add_argument("--precision", default="auto", choices=PRECISIONS)
    run.add_argument("--attention", default="auto", choices=ATTENTIONS)
    run.add_argument("--quantization", default="none", choices=QUANTIZATIONS,
                     help="8bit or 4bit (NF4) weights through bitsandbytes (pip install bitsandbytes accelerate)")
    run.add_argument("--preset", default="default", choices=PRESETS,
                     help="default: the project's settings; paper: the paper's (Tab. 7) for the model's family")
    run.add_argument("--preset-dataset", default="other", choices=DATASETS,
                     help="the benchmark the paper preset's settings are for (vstar, hrbench, mme; default other)")
    _add_common(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="plain answer vs FOCUS on a world scene, with the embedded demo model")
    demo.add_argument("--out", default="focus_demo_out", help="output folder (default: focus_demo_out)")
    demo.add_argument("--model", default=None, help="model folder (default: the embedded demo model)")
    demo.add_argument("--n-steps", type=int, default=4)
    demo.set_defaults(func=cmd_demo)

    from .bench.commands import add_bench_commands

    add_bench_commands(sub)
    return parser


def _verify_stop(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def _verification_options(args: argparse.Namespace) -> dict[str, Any]:
    """Only what the user set: the preset's (or the default's) stands otherwise."""
    options: dict[str, Any] = {} if args.overrun is None else {"overrun": args.overrun}
    return {**options, "verify_stop": args.verify_stop} if hasattr(args, "verify_stop") else options


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-steps", type=int, default=4, help="verification budget (ROIs checked per target)")
    parser.add_argument("--overrun", action=argparse.BooleanOptionalAction, default=None,
                        help="verify beyond n-steps until a crop says Yes (the paper's; default: off, or the preset's)")
    parser.add_argument("--verify-stop", type=_verify_stop, default=argparse.SUPPRESS, metavar="P|none",
                        help="stop verifying a target once a crop's P(Yes) reaches P (default 0.5); none = verify "
                             "n-steps ROIs at once, as the paper")
    parser.add_argument("--source", default="values", choices=RELEVANCE_SOURCES, help="relevance source (ablations)")
    parser.add_argument("--layers", type=int, nargs=2, metavar=("START", "END"), help="layer range [START, END)")
    parser.add_argument("--map-prompt", default="existence", choices=MAP_PROMPTS,
                        help="maps from the paper's existence prompt, or from the question's own prefill")
    parser.add_argument("--gate", type=float, metavar="THRESHOLD",
                        help="adaptive gate: keep the plain answer when its confidence reaches THRESHOLD (0..1)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="[focus] %(message)s")
    try:
        return int(args.func(args))
    except FocusError as exc:
        print(f"focus: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("focus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
