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

from .cli_flags import (
    add_model_flags, add_setting_flags, check_before_loading, check_out_folder, load_model, user_settings,
)
from .config import FocusConfig
from .errors import FocusError
from .masks import DEFAULT_MASK_SHAPE, MASK_SHAPES, RELEVANCE_MASK_THRESHOLD
from .methods.registry import METHOD_NAMES

PREVIEW_MAX_SIDE = 2048
"""Overlays and box drawings are shrunk to this long side; the mask is not."""


def _progress(message: str) -> None:
    print(f"[focus] {message}", file=sys.stderr, flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "target"


def write_outputs(result: Any, image: Image.Image, out: Path, mask_shape: str = DEFAULT_MASK_SHAPE) -> list[Path]:
    """result.json and the mask (``mask_shape``, ``masks.MASK_SHAPES``) of the
    regions the answer used; for FOCUS also a heatmap overlay per target, the
    ROIs drawn and a summary figure."""
    from .masks import result_mask
    from .methods.focus import FocusResult
    from .render import draw_rois, heatmap_overlay, summary_figure

    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("heatmap_*.png"), out / "rois.png", out / "summary.png"]:  # an earlier run's pictures
        stale.unlink(missing_ok=True)
    written = [out / "result.json", out / "roi_mask.png"]
    written[0].write_text(json.dumps(result.to_json(), indent=1))
    mask = result_mask(result, image.size, mask_shape)
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
    """The method ``--method`` names (``--gate T`` with FOCUS: focus-gated:T)
    with the settings the user typed, merged by ``methods.setup.run_config``."""
    from .methods.setup import make_method
    from .presets import describe_preset

    name, settings = _method_and_settings(args)
    method = make_method(name, mllm, **settings)
    _progress(f"preset: {describe_preset(method.config, mllm.family)}")
    return method


def _method_and_settings(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The method's name and the settings the user typed: ``--gate T`` makes
    FOCUS focus-gated:T; with another method it is that method's
    ``gate_threshold``, which its own fields may refuse."""
    name, settings = args.method or "focus", user_settings(args)
    if args.gate is not None:
        if name == "focus":
            name = f"focus-gated:{args.gate}"
        else:
            settings["gate_threshold"] = args.gate
    return name, settings


def _print_summary(result: Any, written: Sequence[Path]) -> None:
    print(f"method   : {result.method}")
    print(f"question : {result.question}")
    if result.options:
        for letter, option in zip(string.ascii_uppercase, result.options):
            print(f"           {letter}. {option}")
    for label, text in result.describe():
        print(f"{label:<9}: {text}")
    finder = getattr(result, "answer_view", {}).get("mode") == "none"  # focus-find: the regions, no answer
    print("answer   : none asked (focus-find gives the regions only)" if finder else f"answer   : {result.answer}")
    if result.options and not finder:
        chosen = (f"{result.answer_option}. {result.options[string.ascii_uppercase.index(result.answer_option)]}"
                  if result.answer_option else "none read from the answer (answer_option is null)")
        print(f"option   : {chosen}")
    cost = result.cost
    print(
        f"cost     : {cost.forward_passes} forward passes, {cost.seconds:.2f} s, "
        f"peak memory {cost.peak_memory_bytes / 2**20:.0f} MiB ({cost.peak_memory_kind})"
    )
    for path in written:
        print(f"wrote    : {path}")


def cmd_run(args: argparse.Namespace) -> int:
    from .images import to_pil_rgb

    if args.gate is not None and not 0.0 <= args.gate <= 1.0:
        raise FocusError(f"--gate {args.gate:g}: the threshold must be between 0 and 1 (a confidence)")
    name, settings = _method_and_settings(args)
    check_before_loading(args, [name], settings)  # nothing the user typed waits for the model to load
    try:
        image = Image.open(args.image)
        image.load()
    except FileNotFoundError:
        raise FocusError(f"image file {args.image!r} does not exist") from None
    except OSError as exc:
        raise FocusError(f"cannot read image {args.image!r}: {exc}") from None
    pil = to_pil_rgb(image)
    if args.model:
        _progress(f"loading {args.model}")
    mllm = load_model(args)
    result = _method_from_args(args, mllm).run(pil, args.question, options=args.options, targets=args.targets,
                                               progress=_progress)
    _print_summary(result, write_outputs(result, pil, Path(args.out), args.mask_shape))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .boxes import coverage
    from .demo import DEMO_DISCLAIMER, demo_item, embedded_model_dir
    from .methods.setup import make_method
    from .mllm import load_mllm
    from .reading import choose_option
    from .render import comparison_figure

    started = time.perf_counter()
    check_out_folder(args.out)
    folder = Path(args.model) if args.model else embedded_model_dir()
    _progress(f"model: {folder}")
    mllm = load_mllm(str(folder), device="cpu", dtype="fp32")
    item = demo_item()
    image, question, options = item.image, item.question, item.options
    truth = options.index(item.answer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image.save(out / "scene.png")
    vanilla = make_method("vanilla", mllm).run(image, question, options)
    result = make_method("focus", mllm, n_steps=args.n_steps).run(image, question, options=options,
                                                                  progress=_progress)

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a question about an image with FOCUS (or another --method)")
    run.add_argument("--method", help=f"how to answer: {', '.join(METHOD_NAMES)} (default: focus)")
    run.add_argument("--image", required=True, help="image file")
    run.add_argument("--question", required=True, help="the question about the image, in quotes")
    run.add_argument("--options", nargs="+", help="multiple-choice options (answer is a letter)")
    run.add_argument("--targets", nargs="+", help="skip target extraction: the objects to look for")
    run.add_argument("--out", default="focus_out", help="output folder (default: focus_out)")
    run.add_argument("--mask-shape", choices=MASK_SHAPES, default=DEFAULT_MASK_SHAPE,
                     help=f"roi_mask.png: the regions' boxes, or where their relevance map reaches "
                          f"{RELEVANCE_MASK_THRESHOLD:g} of its highest value in each (default {DEFAULT_MASK_SHAPE})")
    add_model_flags(run)
    run.add_argument("--n-steps", type=int, default=argparse.SUPPRESS,
                     help=f"verification budget (ROIs checked per target; default {FocusConfig.n_steps})")
    add_setting_flags(run, dataset_default="other")
    run.add_argument("--gate", type=float, metavar="THRESHOLD",
                     help="adaptive gate: keep the plain answer when its confidence reaches THRESHOLD (0..1)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="plain answer vs FOCUS on a world scene, with the embedded demo model")
    demo.add_argument("--out", default="focus_demo_out", help="output folder (default: focus_demo_out)")
    demo.add_argument("--model", default=None, help="model folder (default: the embedded demo model)")
    demo.add_argument("--n-steps", type=int, default=FocusConfig.n_steps,
                      help=f"verification budget (default {FocusConfig.n_steps})")
    demo.set_defaults(func=cmd_demo)

    from .cli_bench import add_bench_commands

    add_bench_commands(sub)
    return parser


def _resume_hint(args: argparse.Namespace) -> str:
    """How an interrupted ``focus bench run`` goes on (nothing for the others)."""
    if getattr(args, "command", None) != "bench" or not hasattr(args, "resume"):
        return ""
    return (f"; the answers so far are kept in {args.out}: run the same command with --resume to go on from "
            f"them (focus bench report --out {args.out} shows them)")


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="[focus] %(message)s")
    try:
        return int(args.func(args))
    except FocusError as exc:
        print(f"focus: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # on a line of its own: a progress bar may be mid-line
        print("\nfocus: interrupted" + _resume_hint(args), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
