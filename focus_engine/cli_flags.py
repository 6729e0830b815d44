"""The flags ``focus run`` and ``focus bench run`` share, declared once: the
model to load and how, and the run's settings.

A settings flag the user does not type is absent from the parsed arguments
(``argparse.SUPPRESS``), so ``user_settings`` hands ``methods.setup.run_config``
only what the user set: the preset's and the method's fields stand
otherwise, and every default is the one in ``FocusConfig``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import (
    ANSWER_SCORINGS,
    ATTENTIONS,
    MAP_PROMPTS,
    PRECISIONS,
    QUANTIZATIONS,
    RELEVANCE_SOURCES,
    FocusConfig,
)
from .presets import DATASETS, PRESETS

DEFAULT = FocusConfig()

SETTING_FLAGS = {
    "preset": "preset", "preset_dataset": "preset_dataset", "overrun": "overrun", "verify_stop": "verify_stop",
    "source": "source", "layers": "layers", "map_prompt": "map_prompt", "max_new_tokens": "answer_max_new_tokens",
    "scoring": "answer_scoring", "n_steps": "n_steps", "reuse_prefixes": "reuse_prefixes",
}
"""Parsed flag name -> the FocusConfig field (or preset choice) it sets."""


def add_model_flags(parser: argparse.ArgumentParser, *, several_devices: bool = False) -> None:
    """Which model, on which device, in which precision and attention."""
    parser.add_argument("--model", help="model folder or Hugging Face hub id (default: the embedded demo model, "
                                        "which knows only the synthetic world)")
    parser.add_argument("--device", default="auto",
                        help="where the model runs: auto (cuda, else mps, else cpu), cuda, cuda:N, cpu or mps")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--attention", default="auto", choices=ATTENTIONS)
    parser.add_argument("--quantization", default="none", choices=QUANTIZATIONS,
                        help="8bit or 4bit (NF4) weights through bitsandbytes (pip install bitsandbytes accelerate)")
    if several_devices:
        parser.add_argument("--device-map", choices=["auto"],
                            help="spread a model larger than one GPU over the GPUs, the CPU and --offload-folder "
                                 "(accelerate's big-model loading; one process)")
        parser.add_argument("--offload-folder", help="where --device-map auto may put the layers that fit nowhere else")


def load_model(args: argparse.Namespace, device: str | None = None, say: Callable[[str], None] = print) -> Any:
    """The model the flags name (``--model``), or the embedded demo model."""
    if not args.model:
        from .demo import load_demo_model

        # the device, precision and attention typed apply to it as to any model
        return load_demo_model(args.quantization, say=say, device=device or args.device, precision=args.precision,
                               attention=args.attention)
    from .mllm import load_mllm

    extra = {"device_map": args.device_map, "offload_folder": args.offload_folder} if hasattr(args, "device_map") else {}
    return load_mllm(args.model, device=device or args.device, dtype=args.precision,
                     attn_implementation=args.attention, quantization=args.quantization, **extra)


def _verify_stop(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def add_setting_flags(parser: argparse.ArgumentParser, *, dataset_default: str) -> None:
    """The run's settings; each is absent from the parsed arguments unless typed."""
    hidden = argparse.SUPPRESS
    parser.add_argument("--preset", default=hidden, choices=PRESETS,
                        help="default: the project's settings; paper: the paper's (Tab. 7) for the model's family "
                             "and --preset-dataset (default: default, or the method's: focus-paper is paper)")
    parser.add_argument("--preset-dataset", default=hidden, choices=DATASETS,
                        help=f"the benchmark the paper preset's settings are for (default: {dataset_default})")
    parser.add_argument("--overrun", action=argparse.BooleanOptionalAction, default=hidden,
                        help="verify beyond n-steps until a crop says Yes (the paper's; default: the preset's, "
                             f"{DEFAULT.overrun} in the default preset)")
    parser.add_argument("--verify-stop", type=_verify_stop, default=hidden, metavar="P|none",
                        help="stop verifying a target once a crop's P(Yes) reaches P; none = verify n-steps ROIs at "
                             f"once, as the paper (default: the preset's, {DEFAULT.verify_stop} in the default preset)")
    parser.add_argument("--source", default=hidden, choices=RELEVANCE_SOURCES,
                        help=f"relevance source (ablations; default {DEFAULT.source})")
    parser.add_argument("--layers", type=int, nargs=2, default=hidden, metavar=("START", "END"),
                        help="layer range [START, END) (default: the model family's)")
    parser.add_argument("--map-prompt", default=hidden, choices=MAP_PROMPTS,
                        help="maps from the paper's existence prompt, or from the question's own prefill "
                             f"(default {DEFAULT.map_prompt})")
    parser.add_argument("--max-new-tokens", type=int, default=hidden,
                        help=f"answer length limit (default {DEFAULT.answer_max_new_tokens})")
    parser.add_argument("--reuse-prefixes", action=argparse.BooleanOptionalAction, default=hidden,
                        help="prefill each image once per question and go on from it (the same answers, faster; "
                             f"--no-reuse-prefixes prefills every prompt whole, for A/B; default {DEFAULT.reuse_prefixes})")
    parser.add_argument("--scoring", default=hidden, choices=ANSWER_SCORINGS,
                        help="multiple choice by the generated answer (the FOCUS paper) or by each option's likelihood "
                             f"as the reply (V*Bench's, ZoomEye's and SEAL's evaluation; default {DEFAULT.answer_scoring})")


def in_flag_words(message: str) -> str:
    """An engine message about a config field (``FocusConfig.n_steps=0: ...``)
    in the words of the flag that sets it (``--n-steps 0: ...``)."""
    flags = {field: "--" + name.replace("_", "-") for name, field in SETTING_FLAGS.items()}

    def flag(match: re.Match[str]) -> str:
        field, value = match.group(1), match.group(2)
        return f"{flags[field]} {value}:" if field in flags else match.group(0)

    return re.sub(r"FocusConfig\.(\w+)=(.*?):", flag, message)


def check_out_folder(out: str) -> None:
    """``--out`` names a folder (made if missing), not a file."""
    from .errors import FocusError

    if Path(out).exists() and not Path(out).is_dir():
        raise FocusError(f"--out {out!r} is a file; give a folder (it is made if missing)")


def check_before_loading(args: argparse.Namespace, methods: Sequence[Any], settings: Mapping[str, Any]) -> None:
    """Everything the user typed that can be judged without a model: the
    question, the output folder, the settings against the method; in the
    words of the flags they typed."""
    from .errors import FocusConfigError
    from .inputs import check_question
    from .methods.setup import check_settings

    if hasattr(args, "question"):
        check_question(args.question)
    check_out_folder(args.out)
    try:
        for method in methods:
            check_settings(method, **settings)
    except FocusConfigError as exc:
        raise FocusConfigError(in_flag_words(str(exc))) from None


def user_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed, by FocusConfig field name."""
    typed = {SETTING_FLAGS[name]: value for name, value in vars(args).items() if name in SETTING_FLAGS}
    if "layers" in typed:
        typed["layers"] = tuple(typed["layers"])
    return typed


__all__ = ["add_model_flags", "add_setting_flags", "check_before_loading", "check_out_folder", "in_flag_words", "load_model", "user_settings"]
