"""Qwen3-VL (``Qwen3VLForConditionalGeneration``, and the MoE variant
``Qwen3VLMoeForConditionalGeneration``): native resolution, 32 px per token.

The view is Qwen2.5-VL's (the subclassed adapter): the image is resized to
multiples of ``patch_size * merge_size`` within a pixel budget, here 16-px
patches merged 2x2, so one visual token per 32x32 px of the resized image,
in an ``(H/32) x (W/32)`` grid laid uniformly over the whole original image.
The image token, ``mm_token_type_ids`` for M-RoPE and the model's cached
``rope_deltas`` work as in Qwen2.5-VL, and so does the check of the token
count against the processor's.

DeepStack. The vision encoder hands the language model, besides its last
layer's merged features (placed in the image positions of the input),
merged features of ``len(deepstack_visual_indexes)`` earlier vision layers
(3 in every released size: vision layers 8, 16, 24 for 2B-8B). The text
model adds the k-th of them to the image positions of the hidden state
*after* decoder layer k (``Qwen3VLTextModel.forward``, ``_deepstack_process``),
so the input of layers 1, 2, 3 carries one, two, three of them, and every
later layer's input carries all three in its residual stream. A layer's
cached values are ``v_proj(input_layernorm(its input))``, computed inside
the layer, so they include the DeepStack additions that reached it: nothing
needs adding back. The map reads the family's default layers, the last 55 %
(2B: 13..27 of 28, 4B/8B: 16..35 of 36), all after the last DeepStack
addition, so every image token it compares carries the features of all
four vision depths; a range starting at layer 1..3 would read a partial sum.
(Mind the transformers bookkeeping: ``output_hidden_states`` records each
decoder layer's output before the addition, so ``hidden_states[k + 1]`` is
not the input of layer k + 1 for k < 3; the contract test reads the layer
inputs with hooks instead.)

The MoE variant has the same vision tower, DeepStack, attention and
``DynamicCache`` (only the MLPs are experts), so it is this adapter (one
registry line).
"""

from __future__ import annotations

from typing import Any

from ..config import ZoomEyeSettings
from .qwen2_5_vl import Qwen2_5_VLAdapter, image_only_processor_class

QWEN3_VL_MAX_PIXELS = 32 * 32 * 1280
"""[ours] Pixel budget cap: 1280 visual tokens, the cap Qwen2.5-VL has.
The processor's own budget (``longest_edge`` 16,777,216 px = 16,384 tokens)
makes a 4K image an 8,000-token prompt whose prefill activations and KV
cache grow with the tokens; 1280 tokens (1.31 MP, e.g. 1280x1024) keep one prefill of the 8B
model within a 24 GB card with the weights in 8-bit, and are more pixels
than Qwen2.5-VL's 1280 tokens (1.0 MP) because each token covers 32 px."""


class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    family = "qwen3_vl"
    description = "Qwen3-VL (Qwen3VLForConditionalGeneration, and Qwen3VLMoeForConditionalGeneration)"
    min_transformers = (4, 57)  # Qwen3-VL's classes arrived in transformers 4.57.0
    default_max_pixels = QWEN3_VL_MAX_PIXELS
    processor_class = "Qwen3VLProcessor"

    @classmethod
    def image_only_processor(cls) -> type:
        # Qwen3VLProcessor names its vision markers itself; the image-only class keeps them as settings
        return image_only_processor_class(
            cls.processor_class, vision_start_token="<|vision_start|>", vision_end_token="<|vision_end|>"
        )

    def family_defaults(self) -> dict[str, Any]:
        # [ours] s_max 8 cells x 32 px = 256 px of the resized image: the span Qwen2.5-VL's 9 x 28 px
        # box has, and the side of Qwen3-VL's smallest image (65,536 px), so a verified crop of a
        # full-size box is shown at about its own resolution. type-2 threshold as for Qwen2.5-VL
        # and OneVision (0.5 on the [0, 1] scale); layers: the last-55 % rule, after DeepStack.
        return {"s_max": 8, "type2_threshold": 0.5}

    def zoomeye_defaults(self) -> ZoomEyeSettings:
        # [ours] ZoomEye has no Qwen3-VL script: Qwen2.5-VL's constants with S = 512, the 16 x 16
        # tokens of 32 px that its S = 448 gives Qwen2.5-VL in 28-px tokens
        return ZoomEyeSettings(input_side=512, view="global_local", bias=0.6, patch_scale=1.2, upper=0.95,
                               decrements=(0.05, 0.1, 0.2))
