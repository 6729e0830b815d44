"""The embedded default model and the scene of ``focus demo``.

The embedded default (``focus_engine/demo_model/``, shipped in the package)
is a small *trained* LLaVA: a real ``LlavaForConditionalGeneration`` (CLIP
ViT + Llama, word-level tokenizer) trained by ``tools/train_demo_model.py``
on the synthetic fine-grained world of ``focus_engine.bench.world`` only,
with auxiliary losses that tie object words to the image patches showing
them. It is loaded by ``load_mllm`` like any user model. (The tiny models the
tests build are in ``focus_engine.testing``.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .bench.world import WorldItem, generate_item
from .errors import FocusError

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
DEMO_DISCLAIMER = (
    "NOTE: the embedded demo model knows only this package's synthetic world (coloured shapes, lettered signs; "
    "docs/demo_model.md): use --model with a real MLLM for real images."
)
DEMO_SEED = 2026
"""World seed of the demo's scene; no training or benchmark set uses it."""


def embedded_model_dir() -> Path:
    """The folder of the embedded (trained) demo model."""
    if not (EMBEDDED_MODEL_DIR / "config.json").is_file():
        raise FocusError(
            f"the embedded demo model is missing from this install ({EMBEDDED_MODEL_DIR}); reinstall "
            "comfyui-focus from its repository, or pass --model with a model folder"
        )
    return EMBEDDED_MODEL_DIR


def load_demo_model(quantization: str = "none", say: Any = print, *, device: str = "cpu", precision: str = "fp32",
                    attention: str = "auto") -> Any:
    """The embedded demo model, loaded as any user model is (by default on
    the CPU in fp32, where it was measured), after ``say``-ing what it is
    (``DEMO_DISCLAIMER``)."""
    from .mllm import load_mllm

    say(DEMO_DISCLAIMER)
    return load_mllm(str(embedded_model_dir()), device=device, dtype=precision, attn_implementation=attention,
                     quantization=quantization)


def demo_item(subtype: str = "label") -> WorldItem:
    """The demo's question: the first ``subtype`` item of world seed
    ``DEMO_SEED`` (a 1-2.6K-pixel scene with a small lettered sign or shape
    among distractors), options shuffled with that seed."""
    for index in range(100):
        item = generate_item(None, DEMO_SEED, index)
        if item.subtype == subtype:
            random.Random(DEMO_SEED).shuffle(item.options)
            return item
    raise ValueError(f"no {subtype!r} question among the first 100 items of seed {DEMO_SEED}")
