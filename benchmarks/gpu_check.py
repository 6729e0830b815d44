"""The GPU check (issue 23): the engine on random-weight models at the real
geometry of the supported 7B-class families, in one command.

    python benchmarks/gpu_check.py                       # on a CUDA machine: --size real, every family
    python benchmarks/gpu_check.py --families llava,qwen2_5_vl --no-quant --out gpu_check.json
    python benchmarks/gpu_check.py --size tiny --out tiny.json   # anywhere (the test runs this on the CPU)

Per family it builds the model in memory from the published configuration
values (no download: LLaVA-1.5-7B, LLaVA-OneVision-7B, Qwen2.5-VL-7B and,
where transformers and the engine have the family, Qwen3-VL-8B), with random
weights, in bf16 with SDPA attention on the GPU (``--size tiny``: a few
layers of width 64, fp32, on the CPU), and a processor made from the
published image-processor values and the test models' word-level tokenizer
(``focus_engine.testing.build_tokenizer``; the model's vocabulary keeps its
published size, so the ids fit). It reports:

- seconds per answer: the plain answer, FOCUS (``--n-steps`` verifications
  per target, overrun off: random weights say nothing about when a search
  would stop) with each image prefilled once (``reuse_prefixes``, the
  default) and with every prompt prefilled whole, and ZoomEye (tree depth
  ``--zoomeye-depth``), each with its search forward passes, its peak
  memory and, for FOCUS, its time over the plain answer's; the decode
  lengths are fixed by the run's size (random weights rarely stop early:
  ``--size real`` decodes 16 answer and 48 target tokens, as a 7B model's
  reasoned target reply and a short answer);
- seconds per forward pass of each kind: a relevance prefill (the existence
  prompt with the image, and the map read from its cache), a verification
  (yes/no on a crop), target extraction (text-only greedy decoding) and the
  answer (greedy decoding with the image), the decodings with their token
  counts (random weights rarely stop before the budget);
- peak memory in bf16 and, with ``--quant`` (default), 8-bit and 4-bit
  (bitsandbytes through ``load_mllm(folder, quantization=...)``, which needs
  the random model saved to a temporary folder first): CUDA max allocated on
  a GPU, process RSS on the CPU;
- that the relevance map computed with SDPA's flash kernel forced
  (``torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)``: every
  attention of the prefill, vision tower included, must run on it, or the
  call fails) equals the map with eager attention, within ``MAP_TOLERANCE``
  of the precision (bf16: the kernels sum in different orders), the peak cell
  equal (or tied within the tolerance). On the CPU the flash kernel does not
  exist: SDPA's own choice is compared with eager instead, and the report
  says so.

The real run keeps to ``--budget-s`` (default 480 s, 8 minutes): a family,
or a family's quantized loads, that would not fit in what is left is
skipped, and the report says why. The numbers are printed as one table per
family and written as JSON (``--out``). Random weights mean the answers are
noise: only times, passes and memory are meaningful.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

PUBLISHED = {
    "llava": "LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf)",
    "llava_onevision": "LLaVA-OneVision-7B (llava-hf/llava-onevision-qwen2-7b-ov-hf)",
    "qwen2_5_vl": "Qwen2.5-VL-7B (Qwen/Qwen2.5-VL-7B-Instruct)",
    "qwen3_vl": "Qwen3-VL-8B (Qwen/Qwen3-VL-8B-Instruct)",
}
MAP_TOLERANCE = {"bf16": 0.05, "fp16": 0.02, "fp32": 1e-4}
"""Largest |flash - eager| on the [0, 1] relevance grid that passes, by precision."""
QUESTION = "What is the colour of the square?"
OPTIONS = ["red", "blue", "green", "white"]
TARGET = "square"
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclasses.dataclass(frozen=True)
class Size:
    """What ``--size`` chooses: where, in what precision, and how big."""

    name: str  # "real" or "tiny"
    device: str
    dtype: str  # "bf16" or "fp32"
    image: tuple[int, int]
    target_box: tuple[int, int, int, int]
    answer_tokens: int
    target_tokens: int
    repeats: int


SIZES = {
    # a V*-like high-resolution image: OneVision takes its full AnyRes grid, Qwen its 1280-token budget
    "real": dict(image=(2246, 1582), target_box=(1800, 300, 1900, 400), answer_tokens=16, target_tokens=48, repeats=3),
    "tiny": dict(image=(448, 336), target_box=(300, 60, 360, 120), answer_tokens=4, target_tokens=8, repeats=1),
}


# ----------------------------------------------------------------- the models
def family_available(family: str) -> str | None:
    """None when ``family`` can be built and wrapped here, else the reason not."""
    import transformers

    from focus_engine.mllm.loader import FAMILY_ADAPTERS

    needs = {"llava": "LlavaConfig", "llava_onevision": "LlavaOnevisionConfig", "qwen2_5_vl": "Qwen2_5_VLConfig",
             "qwen3_vl": "Qwen3VLConfig"}[family]
    if not hasattr(transformers, needs):
        return f"transformers {transformers.__version__} has no {needs}"
    if family not in FAMILY_ADAPTERS:
        return f"focus_engine has no {family} adapter (loader.FAMILY_ADAPTERS)"
    return None


def _pad_vocab(tokenizer: Any, published: int, tiny: bool) -> int:
    """The published vocabulary size (tiny: the tokenizer's, rounded up and
    padded, so that ids past the tokenizer's occur as in the real case)."""
    return max(len(tokenizer), 64 * ((len(tokenizer) + 63) // 64) + 64) if tiny else published


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    from focus_engine.testing import QWEN_SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _special(tokenizer: Any) -> dict[str, int]:
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def llava_parts(tiny: bool) -> tuple[Any, Any, Any]:
    """LLaVA-1.5-7B: CLIP ViT-L/14 at 336 px (1024 wide, 24 layers, 16 heads,
    4096 MLP), the second-last layer's patch features, a 2-layer GELU
    projector, Llama-2-7B (4096 wide, 32 layers, 32 heads, 11008 MLP, 4096
    positions), 32064 tokens."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    try:
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor

    from focus_engine.testing import CHAT_TEMPLATE, build_tokenizer

    tokenizer = build_tokenizer()
    side = 112 if tiny else 336
    vision = CLIPVisionConfig(
        hidden_size=64 if tiny else 1024, intermediate_size=256 if tiny else 4096,
        num_hidden_layers=2 if tiny else 24, num_attention_heads=2 if tiny else 16, image_size=side, patch_size=14,
        projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    text = LlamaConfig(
        hidden_size=64 if tiny else 4096, intermediate_size=172 if tiny else 11008,
        num_hidden_layers=4 if tiny else 32, num_attention_heads=4 if tiny else 32,
        num_key_value_heads=4 if tiny else 32, vocab_size=_pad_vocab(tokenizer, 32064, tiny),
        max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False, **_special(tokenizer),
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side},
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        image_token="<image>", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    return LlavaForConditionalGeneration, config, processor


def onevision_parts(tiny: bool) -> tuple[Any, Any, Any]:
    """LLaVA-OneVision-7B: SigLIP so400m at 384 px (1152 wide, 26 layers, 16
    heads, 4304 MLP; 729 tokens a crop), AnyRes crops on pinpoints 384..2304
    step 384 (up to 6x6), anyres_max_9, Qwen2-7B (3584 wide, 28 layers, 28
    heads, 4 KV heads, 18944 MLP), 152128 tokens. Tiny: 112-px crops, 1..3 x
    1..3 pinpoints."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    try:
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil as ImageProcessor,
        )
    except ImportError:  # transformers 4.x
        from transformers import LlavaOnevisionImageProcessor as ImageProcessor

    from focus_engine.mllm.llava_onevision import image_only_processor_class
    from focus_engine.testing import CHAT_TEMPLATE, build_tokenizer

    tokenizer = build_tokenizer()
    side, steps = (112, 3) if tiny else (384, 6)
    pinpoints = [[side * r, side * c] for r in range(1, steps + 1) for c in range(1, steps + 1)]
    config = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=64 if tiny else 1152,
            intermediate_size=128 if tiny else 4304, num_hidden_layers=2 if tiny else 26,
            num_attention_heads=2 if tiny else 16, image_size=side, patch_size=14, hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=1e-6,
        ),
        text_config=dict(
            model_type="qwen2", hidden_size=64 if tiny else 3584, intermediate_size=172 if tiny else 18944,
            num_hidden_layers=4 if tiny else 28, num_attention_heads=4 if tiny else 28,
            num_key_value_heads=2 if tiny else 4, vocab_size=_pad_vocab(tokenizer, 152128, tiny),
            max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False, **_special(tokenizer),
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), video_token_id=tokenizer.unk_token_id,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_9", vision_feature_layer=-1,
        vision_feature_select_strategy="full", projector_hidden_act="gelu",
    )
    image_processor = ImageProcessor(
        size={"height": side, "width": side}, crop_size={"height": side, "width": side},
        image_grid_pinpoints=pinpoints, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    processor = image_only_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=(side // 14) ** 2,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE, vision_aspect_ratio="anyres_max_9",
    )
    return LlavaOnevisionForConditionalGeneration, config, processor


def _qwen_image_processor(patch: int, min_pixels: int, max_pixels: int, mean: list[float], std: list[float]) -> Any:
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import Qwen2VLImageProcessor as Processor

    return Processor(patch_size=patch, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels,
                     max_pixels=max_pixels, image_mean=mean, image_std=std)


def qwen2_5_vl_parts(tiny: bool) -> tuple[Any, Any, Any]:
    """Qwen2.5-VL-7B: a 32-block ViT (1280 wide, 16 heads, 3420 MLP, 14-px
    patches, 2x2 merge to 3584, window attention of 112 px with full
    attention in blocks 7, 15, 23, 31), Qwen2.5-7B (3584 wide, 28 layers, 28
    heads, 4 KV heads, 18944 MLP, M-RoPE sections 16/24/24), 152064 tokens;
    the engine's 1280-token pixel budget."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from focus_engine.mllm.qwen2_5_vl import image_only_processor_class
    from focus_engine.testing import build_tokenizer

    tokenizer = build_tokenizer(family="qwen2_5_vl")
    text_hidden, heads = (64, 4) if tiny else (3584, 28)
    head_dim = text_hidden // heads
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2 if tiny else 32, hidden_size=64 if tiny else 1280, intermediate_size=128 if tiny else 3420,
            num_heads=2 if tiny else 16, out_hidden_size=text_hidden, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1] if tiny else [7, 15, 23, 31],
            tokens_per_second=2, hidden_act="silu", in_channels=3,
        ),
        text_config=dict(
            hidden_size=text_hidden, intermediate_size=172 if tiny else 18944, num_hidden_layers=4 if tiny else 28,
            num_attention_heads=heads, num_key_value_heads=2 if tiny else 4,
            vocab_size=_pad_vocab(tokenizer, 152064, tiny), max_position_embeddings=128000, rms_norm_eps=1e-6,
            tie_word_embeddings=False, **_special(tokenizer),
            rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]},
        ),
        tie_word_embeddings=False, **_qwen_ids(tokenizer), **_special(tokenizer),
    )
    image_processor = _qwen_image_processor(14, 56 * 56, 28 * 28 * (64 if tiny else 16384), OPENAI_CLIP_MEAN,
                                            OPENAI_CLIP_STD)
    processor = image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer)
    return Qwen2_5_VLForConditionalGeneration, config, processor


def qwen3_vl_parts(tiny: bool) -> tuple[Any, Any, Any]:
    """Qwen3-VL-8B: a 27-block ViT (1152 wide, 16 heads, 4304 MLP, 16-px
    patches, 2x2 merge to 4096, 48x48 learned positions, DeepStack from
    blocks 8, 16, 24), Qwen3-8B (4096 wide, 36 layers, 32 heads, 8 KV heads,
    head 128, 12288 MLP, interleaved M-RoPE 24/20/20), 151936 tokens; the
    engine's 1280-token pixel budget."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from focus_engine.mllm.qwen3_vl import Qwen3VLAdapter
    from focus_engine.testing import build_tokenizer

    tokenizer = build_tokenizer(family="qwen")
    text_hidden, heads = (64, 4) if tiny else (4096, 32)
    head_dim = text_hidden // heads
    section = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6] if tiny else [24, 20, 20]
    config = Qwen3VLConfig(
        vision_config=dict(
            depth=3 if tiny else 27, hidden_size=64 if tiny else 1152, intermediate_size=128 if tiny else 4304,
            num_heads=2 if tiny else 16, out_hidden_size=text_hidden, patch_size=16, spatial_merge_size=2,
            temporal_patch_size=2, num_position_embeddings=576 if tiny else 2304,
            deepstack_visual_indexes=[0, 1, 2] if tiny else [8, 16, 24], hidden_act="gelu_pytorch_tanh",
        ),
        text_config=dict(
            hidden_size=text_hidden, intermediate_size=172 if tiny else 12288, num_hidden_layers=4 if tiny else 36,
            num_attention_heads=heads, num_key_value_heads=2 if tiny else 8, head_dim=head_dim,
            vocab_size=_pad_vocab(tokenizer, 151936, tiny), max_position_embeddings=262144, rms_norm_eps=1e-6,
            tie_word_embeddings=False, **_special(tokenizer),
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": section,
                             "mrope_interleaved": True},
        ),
        tie_word_embeddings=False, **_qwen_ids(tokenizer),
    )
    image_processor = _qwen_image_processor(16, 64 * 64 if tiny else 65536, 32 * 32 * (64 if tiny else 16384),
                                            [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    processor = Qwen3VLAdapter.image_only_processor()(image_processor=image_processor, tokenizer=tokenizer)
    return Qwen3VLForConditionalGeneration, config, processor


PARTS: dict[str, Callable[[bool], tuple[Any, Any, Any]]] = {
    "llava": llava_parts, "llava_onevision": onevision_parts, "qwen2_5_vl": qwen2_5_vl_parts,
    "qwen3_vl": qwen3_vl_parts,
}
FAMILIES = tuple(PARTS)
"""The families this check builds at real size (each one's parts builder above)."""


def build_model(family: str, size: Size, attention: str = "sdpa") -> tuple[Any, Any]:
    """The random-weight model (on ``size.device``, in its precision, with
    ``attention``) and its processor."""
    import torch

    model_cls, config, processor = PARTS[family](size.name == "tiny")
    torch.manual_seed(0)
    with torch.device(size.device):
        model = model_cls._from_config(config, dtype=_torch_dtype(size.dtype), attn_implementation=attention)
    model.eval().requires_grad_(False)
    return model, processor


def _torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def attention_implementations(model: Any) -> dict[str, str]:
    """The attention implementation of the model's config and each sub-config."""
    config = model.config
    out = {"model": str(config._attn_implementation)}
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            out[key] = str(sub._attn_implementation)
    return out


# ----------------------------------------------------------------- measuring
def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> tuple[float, Any]:
    """The median seconds of ``repeats`` calls (after one warm-up call) and the last result."""
    if warm_up:
        fn()
    seconds, result = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), result


def forward_passes(mllm: Any, image: Any, size: Size, config: Any) -> dict[str, Any]:
    """Seconds of one forward pass of each kind the methods make (median of
    ``size.repeats`` after a warm-up), the decodings with their new tokens."""
    from focus_engine.prompts import format_question
    from focus_engine.relevance import relevance_from_prefill
    from focus_engine.targets import build_icl_prompt

    device = str(mllm.device)
    warm_up = size.name == "real"  # CUDA's first calls pay for kernels and cuBLAS set-up; the CPU's need none
    width, height = image.size
    crop = image.crop((width // 2, 0, width, height // 2))  # a quarter, as a verified ROI would be shown

    def relevance() -> Any:
        return relevance_from_prefill(mllm.prefill(image, TARGET), TARGET, config)

    def decode(text: str, images: list, budget: int) -> Any:
        views = [mllm.view(im) for im in images]
        inputs = mllm.processor_inputs(views, [mllm.build_prompt(len(views), text)])
        return mllm._decode(inputs, None, budget, None)

    out: dict[str, Any] = {}
    seconds, rmap = timed(device, relevance, size.repeats, warm_up)
    out["relevance_prefill"] = {"seconds": seconds, "prompt_tokens": mllm.prompt_length(
        "Is there a square in the image?", image), "grid": list(rmap.grid.shape)}
    seconds, _ = timed(device, lambda: mllm.yes_no_confidence([crop], [TARGET]), size.repeats, warm_up)
    out["verification"] = {"seconds": seconds, "prompt_tokens": mllm.prompt_length("Is there a square?", crop)}
    for kind, text, images, budget in (
        ("target_extraction", build_icl_prompt(QUESTION), [], config.target_max_new_tokens),
        ("answer", format_question(QUESTION, OPTIONS), [image], config.answer_max_new_tokens),
    ):
        seconds, decoded = timed(device, lambda: decode(text, images, budget), size.repeats, warm_up)
        tokens = len(decoded.token_probabilities)
        out[kind] = {"seconds": seconds, "new_tokens": tokens, "budget": budget,
                     "seconds_per_token": seconds / max(tokens, 1),
                     "prompt_tokens": mllm.prompt_length(text, images[0] if images else None)}
    return out


def method_runs(mllm: Any, image: Any, config: Any, zoomeye_depth: int) -> dict[str, Any]:
    """One plain, one FOCUS (each image prefilled once), one FOCUS with every
    prompt prefilled whole (``focus_whole``) and one ZoomEye answer: seconds,
    search passes, generate calls, peak memory, stage seconds, and the
    searches' seconds over the plain answer's."""
    from focus_engine.config import ZoomEyeSettings
    from focus_engine.methods import make_method
    from focus_engine.methods.zoomeye import ZoomEye

    zoomeye = ZoomEye(mllm, config, settings=dataclasses.replace(ZoomEyeSettings.for_model(mllm),
                                                                 depth_limit=zoomeye_depth))
    methods = {"plain": make_method("vanilla", mllm, config), "focus": make_method("focus", mllm, config),
               "focus_whole": make_method("focus", mllm, dataclasses.replace(config, reuse_prefixes=False)),
               "zoomeye": zoomeye}
    out = {}
    for name, method in methods.items():
        result = method.run(image, QUESTION, OPTIONS)
        cost = result.cost
        out[name] = {"seconds": cost.seconds, "forward_passes": cost.forward_passes,
                     "generate_calls": cost.generate_calls, "peak_memory_bytes": cost.peak_memory_bytes,
                     "peak_memory_kind": cost.peak_memory_kind,
                     "stage_seconds": {k: round(v, 4) for k, v in cost.stage_seconds.items()},
                     "stage_forward_passes": dict(cost.stage_forward_passes),
                     "targets": list(result.targets)}
    for name in ("focus", "focus_whole", "zoomeye"):
        out[name]["times_plain"] = out[name]["seconds"] / out["plain"]["seconds"]
    return out


def maps_check(mllm: Any, image: Any, config: Any, dtype: str) -> dict[str, Any]:
    """The relevance map of ``TARGET`` with SDPA (its flash kernel forced on
    CUDA) and with eager attention on the same weights, compared."""
    import numpy as np
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from focus_engine.relevance import target_map

    model = mllm.model
    on_cuda = mllm.device.type == "cuda"
    backend = "flash" if on_cuda else "default"
    context = sdpa_kernel(SDPBackend.FLASH_ATTENTION) if on_cuda else contextlib.nullcontext()
    out: dict[str, Any] = {"sdpa_backend": backend, "tolerance": MAP_TOLERANCE[dtype]}
    if not on_cuda:
        out["note"] = "flash: not available on CPU; SDPA's own choice of kernel compared with eager instead"
    try:
        with context:
            sdpa = target_map(mllm, image, TARGET, config).grid
    except RuntimeError as exc:  # the flash kernel refused a call of the prefill
        out.update(passed=False, error=f"sdpa-{backend}: {str(exc).splitlines()[0][:300]}")
        return out
    model.set_attn_implementation("eager")
    try:
        out["eager_implementations"] = attention_implementations(model)
        eager = target_map(mllm, image, TARGET, config).grid
    finally:
        model.set_attn_implementation("sdpa")
    diff = np.abs(sdpa.astype(np.float64) - eager.astype(np.float64))
    peak_sdpa = tuple(int(i) for i in np.unravel_index(int(np.argmax(sdpa)), sdpa.shape))
    peak_eager = tuple(int(i) for i in np.unravel_index(int(np.argmax(eager)), eager.shape))
    tied = float(eager.max() - eager[peak_sdpa]) <= out["tolerance"]
    flat_a, flat_b = sdpa.astype(np.float64).ravel(), eager.astype(np.float64).ravel()
    spread = flat_a.std() * flat_b.std()
    out.update(
        grid=list(sdpa.shape), max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        correlation=float(((flat_a - flat_a.mean()) * (flat_b - flat_b.mean())).mean() / spread) if spread else 1.0,
        eager_at_sdpa_peak=float(eager[peak_sdpa]), eager_max=float(eager.max()),
        peak_cell_sdpa=list(peak_sdpa), peak_cell_eager=list(peak_eager), peak_cell_equal=peak_sdpa == peak_eager,
        passed=bool(diff.max() <= out["tolerance"] and (peak_sdpa == peak_eager or tied)),
        finite=bool(np.isfinite(sdpa).all() and np.isfinite(eager).all()),
    )
    out["passed"] = out["passed"] and out["finite"]
    return out


def quantized_runs(folder: Path, size: Size, config: Any, image: Any) -> dict[str, Any]:
    """8-bit and 4-bit loads of the saved random model through ``load_mllm``:
    load seconds, weight memory, a plain and a FOCUS answer (seconds, peak)."""
    from focus_engine import load_mllm
    from focus_engine.methods import make_method

    out: dict[str, Any] = {}
    quiet = logging.getLogger("bitsandbytes")  # bitsandbytes 0.50 logs its fp16 cast on every 8-bit matmul
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    for quantization in ("8bit", "4bit"):
        try:
            free_memory()
            t0 = time.perf_counter()
            mllm = load_mllm(str(folder), device=size.device, dtype=size.dtype, attn_implementation="sdpa",
                             quantization=quantization)
            load_s = time.perf_counter() - t0
            entry: dict[str, Any] = {"load_seconds": load_s, "weights_bytes": weights_bytes(mllm)}
            for name in ("plain", "focus"):
                result = make_method("vanilla" if name == "plain" else "focus", mllm, config).run(
                    image, QUESTION, OPTIONS)
                entry[name] = {"seconds": result.cost.seconds, "peak_memory_bytes": result.cost.peak_memory_bytes,
                               "peak_memory_kind": result.cost.peak_memory_kind,
                               "forward_passes": result.cost.forward_passes}
            out[quantization] = entry
            del mllm
        except Exception as exc:  # noqa: BLE001 - reported, the check goes on
            out[quantization] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    quiet.setLevel(level)
    free_memory()
    return out


def weights_bytes(mllm: Any) -> int:
    """Bytes the model holds on its device (CUDA allocated; on the CPU the
    parameters' and buffers' own sizes)."""
    import torch

    if mllm.device.type == "cuda":
        sync("cuda")
        return int(torch.cuda.memory_allocated(mllm.device))
    model = mllm.model
    return int(sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())))


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def quant_unavailable(device: str) -> str | None:
    """None when bitsandbytes quantizes on ``device`` here (tried on a small
    tensor, before any model is saved), else why not."""
    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    if not (device.startswith("cuda") or device == "cpu"):
        return f"bitsandbytes does not run on {device}"
    try:
        import bitsandbytes.functional as bnb_functional
        import torch

        weight = torch.randn(128, 128, device=device, dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32)
        packed, state = bnb_functional.quantize_4bit(weight, quant_type="nf4")
        bnb_functional.dequantize_4bit(packed, state)
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return f"bitsandbytes cannot quantize on {device} here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


# ----------------------------------------------------------------- one family
def focus_config(mllm: Any, size: Size, args: argparse.Namespace) -> Any:
    from focus_engine import FocusConfig, resolve_config

    # the paper's boxes (extent_floor None): on a random, nearly flat map the extent rule grows one box
    # over most of the image and NMS leaves that one ROI, so FOCUS would verify one crop, not n_steps
    return resolve_config(mllm, FocusConfig(n_steps=args.n_steps, overrun=False, extent_floor=None,
                                            answer_max_new_tokens=size.answer_tokens,
                                            target_max_new_tokens=size.target_tokens))


def check_family(family: str, size: Size, args: argparse.Namespace) -> dict[str, Any]:
    """What the check reports for one family in the run's own precision."""
    from focus_engine import load_mllm
    from focus_engine.testing import synthetic_scene

    started = time.perf_counter()
    report: dict[str, Any] = {"published": PUBLISHED[family], "size": size.name}
    model, processor = build_model(family, size)
    sync(size.device)
    report["build_seconds"] = time.perf_counter() - started
    report["parameters"] = int(sum(p.numel() for p in model.parameters()))
    report["attention"] = attention_implementations(model)
    mllm = load_mllm((model, processor))
    report["weights_bytes"] = weights_bytes(mllm)
    image = synthetic_scene(size.image, size.target_box)
    config = focus_config(mllm, size, args)
    report["config"] = {"n_steps": config.n_steps, "overrun": config.overrun, "layers": list(config.layers),
                        "answer_max_new_tokens": config.answer_max_new_tokens,
                        "target_max_new_tokens": config.target_max_new_tokens, "zoomeye_depth": args.zoomeye_depth}
    report["visual_tokens"] = mllm.prompt_length("x", image) - mllm.prompt_length("x")
    report["forward_passes"] = forward_passes(mllm, image, size, config)
    report["methods"] = method_runs(mllm, image, config, args.zoomeye_depth)
    report["maps"] = maps_check(mllm, image, config, size.dtype)
    report["precision"] = {size.dtype: {
        "weights_bytes": report["weights_bytes"],
        "plain": {k: report["methods"]["plain"][k] for k in ("seconds", "peak_memory_bytes", "peak_memory_kind")},
        "focus": {k: report["methods"]["focus"][k] for k in ("seconds", "peak_memory_bytes", "peak_memory_kind")},
    }}
    report["seconds"] = time.perf_counter() - started
    return report


def check_quantized(family: str, size: Size, args: argparse.Namespace) -> dict[str, Any]:
    """The same random model (same seed) saved to a temporary folder and
    loaded in 8-bit and in 4-bit through ``load_mllm``."""
    from focus_engine import load_mllm
    from focus_engine.testing import portable_tokenizer_config, synthetic_scene

    started = time.perf_counter()
    image = synthetic_scene(size.image, size.target_box)
    with tempfile.TemporaryDirectory(prefix="focus_gpu_check_", dir=args.tmp) as tmp:
        folder = Path(tmp) / family
        model, processor = build_model(family, size)
        config = focus_config(load_mllm((model, processor)), size, args)
        t0 = time.perf_counter()
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        portable_tokenizer_config(folder)
        saved = {"save_seconds": time.perf_counter() - t0,
                 "saved_bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file())}
        del model
        free_memory()
        out = quantized_runs(folder, size, config, image)
    out["_timing"] = {**saved, "seconds": time.perf_counter() - started}
    return out


class Budget:
    """The run's wall-time budget: what is left, and whether a step fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.family_seconds: list[float] = []
        self.quant_seconds_per_byte: float | None = None

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def refuse(self, what: str, estimate: float) -> str | None:
        """A reason to skip ``what`` when ``estimate`` seconds do not fit in what is left."""
        left = self.left()
        if estimate > left:
            return f"time budget: {left:.0f} s of {self.seconds:.0f} s left, {what} need about {estimate:.0f} s"
        return None

    def family_estimate(self) -> float:
        """A family's part in the run's precision: the longest so far (the first: a sixth of the budget)."""
        return max(self.family_seconds, default=self.seconds / 6)

    def quant_estimate(self, report: dict[str, Any]) -> float:
        """A family's quantized loads: as the last one took per weight byte,
        else a guess (saving at 0.5 GB/s, each load at 1 GB/s, twice the
        family's plain + FOCUS answer seconds each)."""
        size = report["weights_bytes"]
        if self.quant_seconds_per_byte:
            return self.quant_seconds_per_byte * size
        answers = report["methods"]["plain"]["seconds"] + report["methods"]["focus"]["seconds"]
        return size / 0.5e9 + 2 * (size / 1e9 + 2 * answers) + report["build_seconds"]


# ----------------------------------------------------------------- the report
def gb(value: Any) -> str:
    if not isinstance(value, (int, float)) or not value:
        return "-"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


def format_family(family: str, r: dict[str, Any]) -> str:
    """One family's table."""
    if "skipped" in r:
        return f"{PUBLISHED[family]}: skipped ({r['skipped']})"
    if "error" in r:
        return f"{PUBLISHED[family]}: FAILED ({r['error']})"
    c = r["config"]
    lines = [
        f"{r['published']}  [{r['size']}: {r['parameters'] / 1e9:.2f} B parameters, random weights, "
        f"{r['attention']['model']}; {r['visual_tokens']} visual tokens; built in {r['build_seconds']:.1f} s]",
        f"  {'answer':<34}{'seconds':>9}{'search passes':>15}{'generates':>11}{'peak memory':>14}{'x plain':>9}",
    ]
    verified = r["methods"]["focus"].get("stage_forward_passes", {}).get("ranking", "?")
    names = {"plain": "plain", "focus": f"FOCUS (n_steps {c['n_steps']}, {verified} verified)",
             "focus_whole": "FOCUS, every prompt whole",
             "zoomeye": f"ZoomEye (depth {c['zoomeye_depth']})"}
    for key, label in names.items():
        m = r["methods"][key]
        ratio = f"{m['times_plain']:>8.2f}x" if "times_plain" in m else ""
        lines.append(f"  {label:<34}{m['seconds']:>9.3f}{m['forward_passes']:>15}{m['generate_calls']:>11}"
                     f"{gb(m['peak_memory_bytes']):>14}{ratio}")
    lines.append(f"  (decoded: {c['answer_max_new_tokens']} answer and {c['target_max_new_tokens']} target tokens at "
                 "most; random weights rarely stop earlier)")
    lines.append(f"  {'forward pass':<34}{'seconds':>9}{'prompt tok':>15}{'new tok':>11}{'s / token':>14}")
    for key, label in (("relevance_prefill", "relevance prefill + map"), ("verification", "verification (yes/no)"),
                       ("target_extraction", "target extraction"), ("answer", "answer (with image)")):
        f = r["forward_passes"][key]
        new = f"{f['new_tokens']}/{f['budget']}" if "new_tokens" in f else "-"
        per = f"{f['seconds_per_token']:.4f}" if "seconds_per_token" in f else "-"
        lines.append(f"  {label:<34}{f['seconds']:>9.3f}{f['prompt_tokens']:>15}{new:>11}{per:>14}")
    lines.append(format_precision(r))
    m = r["maps"]
    if "error" in m:
        lines.append(f"  maps sdpa-{m['sdpa_backend']} vs eager: FAILED ({m['error']})")
    else:
        peak = (f"peak cell {tuple(m['peak_cell_sdpa'])} equal" if m["peak_cell_equal"] else
                f"peak cells {tuple(m['peak_cell_sdpa'])} vs {tuple(m['peak_cell_eager'])} differ, tied within "
                f"tolerance (eager {m['eager_at_sdpa_peak']:.3f} there, max {m['eager_max']:.3f})")
        lines.append(
            f"  maps sdpa-{m['sdpa_backend']} vs eager ({'x'.join(map(str, m['grid']))} grid): max |diff| "
            f"{m['max_abs_diff']:.2e} (tolerance {m['tolerance']:g}), correlation {m['correlation']:.4f}, {peak}: "
            f"{'pass' if m['passed'] else 'FAIL'}" + (f"  [{m['note']}]" if "note" in m else "")
        )
    lines.append(f"  family took {r['seconds']:.1f} s")
    return "\n".join(lines)


def format_precision(r: dict[str, Any]) -> str:
    """The memory and seconds of a plain and a FOCUS answer per precision."""
    lines = [f"  {'precision':<34}{'weights':>12}{'peak plain':>12}{'peak FOCUS':>12}{'s plain':>9}{'s FOCUS':>9}"]
    for precision, p in r["precision"].items():
        if "skipped" in p:
            lines.append(f"  {precision:<34}skipped: {p['skipped']}")
            continue
        lines.append(f"  {precision:<34}{gb(p['weights_bytes']):>12}{gb(p['plain']['peak_memory_bytes']):>12}"
                     f"{gb(p['focus']['peak_memory_bytes']):>12}{p['plain']['seconds']:>9.3f}"
                     f"{p['focus']['seconds']:>9.3f}")
    return "\n".join(lines)


def environment(size: Size) -> dict[str, Any]:
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "device": size.device, "dtype": size.dtype, "cpu_threads": torch.get_num_threads()}
    if size.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    if importlib.util.find_spec("bitsandbytes") is not None:
        from importlib.metadata import version

        env["bitsandbytes"] = version("bitsandbytes")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("real", "tiny"), default=None,
                        help="real: the published geometry in bf16 (default on CUDA); tiny: width 64, fp32, the CPU")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--device", default=None, help="default: cuda for --size real, cpu for tiny")
    parser.add_argument("--n-steps", type=int, default=4, help="FOCUS verifications per target (overrun off)")
    parser.add_argument("--zoomeye-depth", type=int, default=2, help="ZoomEye's depth limit")
    parser.add_argument("--quant", action=argparse.BooleanOptionalAction, default=True,
                        help="also load 8-bit and 4-bit (bitsandbytes; saves the random model to --tmp first)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-time budget (default: 480 real, 600 tiny)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of each forward pass (after a warm-up)")
    parser.add_argument("--tmp", default=None, help="where the quantized loads' temporary folder goes")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the loading and saving bars would bury the tables
    size_name = args.size or ("real" if torch.cuda.is_available() else "tiny")
    device = args.device or ("cuda" if size_name == "real" else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available here: run with --size tiny (the CPU), or on a CUDA machine")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    values = dict(SIZES[size_name])
    if args.repeats is not None:
        values["repeats"] = args.repeats
    dtype = "bf16" if device.startswith("cuda") and size_name == "real" else "fp32"
    size = Size(name=size_name, device=device, dtype=dtype, **values)
    budget = Budget(args.budget_s or (480.0 if size_name == "real" else 600.0))
    write = (lambda: Path(args.out).write_text(json.dumps(report, indent=1))) if args.out else (lambda: None)

    report: dict[str, Any] = {"environment": environment(size), "size": size_name, "budget_s": budget.seconds,
                              "image": list(size.image), "question": QUESTION, "options": OPTIONS,
                              "target": TARGET, "families": {}}
    print(f"GPU check: {size_name} size on {device} ({dtype}), budget {budget.seconds:.0f} s; "
          f"torch {report['environment']['torch']}, transformers {report['environment']['transformers']}"
          + (f", {report['environment']['gpu']}" if "gpu" in report["environment"] else ""), flush=True)
    # first every family in the run's precision, then (time allowing) the quantized loads,
    # so that a short budget keeps the main numbers of every family
    for family in families:
        reason = family_available(family) or budget.refuse("a family", budget.family_estimate())
        if reason:
            report["families"][family] = {"published": PUBLISHED[family], "skipped": reason}
        else:
            t0 = time.perf_counter()
            try:
                report["families"][family] = check_family(family, size, args)
            except Exception as exc:  # noqa: BLE001 - one family's failure is reported, the rest go on
                report["families"][family] = {"published": PUBLISHED[family],
                                              "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"}
            budget.family_seconds.append(time.perf_counter() - t0)
            free_memory()
        print("\n" + format_family(family, report["families"][family]), flush=True)
        write()  # after every step, so that a run stopped early keeps what it measured
    checked = [f for f, r in report["families"].items() if "methods" in r]
    no_quant = "--no-quant" if not args.quant else quant_unavailable(device) if checked else None
    for family in checked:
        r = report["families"][family]
        reason = no_quant or budget.refuse("the 8-bit and 4-bit loads", budget.quant_estimate(r))
        if reason:
            r["precision"]["8bit"] = r["precision"]["4bit"] = {"skipped": reason}
        else:
            try:
                quantized = check_quantized(family, size, args)
                r["quantized_timing"] = quantized.pop("_timing")
                budget.quant_seconds_per_byte = r["quantized_timing"]["seconds"] / r["weights_bytes"]
            except Exception as exc:  # noqa: BLE001 - reported, the rest go on
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                quantized = {"8bit": {"skipped": reason}, "4bit": {"skipped": reason}}
            r["precision"].update(quantized)
            free_memory()
        if args.quant:
            print(f"\n{PUBLISHED[family]}, quantized:\n" + format_precision(r), flush=True)
        write()
    report["elapsed_s"] = budget.seconds - budget.left()
    checked = [r for r in report["families"].values() if "methods" in r]
    report["maps_all_passed"] = bool(checked) and all(r["maps"]["passed"] for r in checked)
    failed = [f for f, r in report["families"].items() if "error" in r or ("maps" in r and not r["maps"]["passed"])]
    print(f"\n{len(checked)} of {len(families)} families checked in {report['elapsed_s']:.0f} s; maps "
          + ("equal" if report["maps_all_passed"] else "NOT all equal") + (f"; failed: {', '.join(failed)}" if failed else ""))
    write()
    if args.out:
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded (bitsandbytes would look for a CPU kernel)
    sys.exit(main())
