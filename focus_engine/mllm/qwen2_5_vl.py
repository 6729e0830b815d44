"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): native resolution.

The image is resized to multiples of 28 px within a pixel budget; 14-px
patches are merged 2x2, so the visual tokens form an ``(H/28) x (W/28)`` grid
laid uniformly over the whole original image (no padding, no crop). We do the
resize ourselves with the library's ``smart_resize`` so the geometry is known
before the processor runs (its own resize is then a no-op), and check it
against the token count. M-RoPE needs the processor's ``mm_token_type_ids``,
and the model caches ``rope_deltas`` between calls: both are handled here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from ..config import ZoomEyeSettings
from ..errors import FocusConfigError, FocusModelError
from ..grid import GridGeometry
from . import hf_loading
from .base import MLLM, FamilySettings, VisualView

try:  # transformers 5.x
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
except ImportError:  # transformers 4.x
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

DEFAULT_MAX_PIXELS = 28 * 28 * 1280
"""[ours] Pixel budget cap (1280 visual tokens): larger budgets run out of
memory on consumer GPUs with high-resolution inputs."""
MERGED_PATCH_PIXELS = 28 * 28


@dataclass(frozen=True)
class QwenSettings(FamilySettings):
    min_pixels: int | None = None
    max_pixels: int | None = None
    """Pixel budget of one image; ``None`` = the processor's, with max capped
    at ``DEFAULT_MAX_PIXELS`` [ours] (larger budgets run out of memory)."""

    def check(self) -> None:
        if self.min_pixels is not None and self.min_pixels < MERGED_PATCH_PIXELS:
            raise FocusConfigError(
                f"min_pixels={self.min_pixels!r}: must be at least 784 (one 28x28 merged patch) or None"
            )
        if self.max_pixels is not None and self.max_pixels < max(MERGED_PATCH_PIXELS, self.min_pixels or 0):
            raise FocusConfigError(f"max_pixels={self.max_pixels!r}: must be at least 784 and at least min_pixels")


def image_only_processor_class(processor_class: str = "Qwen2_5_VLProcessor", **settings: Any) -> type:
    """A Qwen-VL processor (Qwen2.5-VL's by default) without the video
    processor (which needs torchvision): FOCUS only sends images."""
    return hf_loading.image_only_processor_class(
        processor_class, image_token="<|image_pad|>", video_token="<|video_pad|>", settings=settings or None
    )


class Qwen2_5_VLAdapter(MLLM):
    family = "qwen2_5_vl"
    description = "Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration)"
    paper_layers: dict[int, tuple[int, int]] = {}  # the paper gives none: last-fraction rule
    Settings = QwenSettings
    settings: QwenSettings
    default_max_pixels = DEFAULT_MAX_PIXELS
    """[ours] The cap on the processor's pixel budget (see ``DEFAULT_MAX_PIXELS``)."""

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        image_processor = processor.image_processor
        self.patch_size = int(getattr(image_processor, "patch_size", None) or 14)
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.factor = self.patch_size * self.merge_size
        size = getattr(image_processor, "size", None) or {}
        get = size.get if isinstance(size, dict) else (lambda key, s=size: getattr(s, key, None))
        processor_min = int(getattr(image_processor, "min_pixels", None) or get("shortest_edge") or 56 * 56)
        processor_max = int(getattr(image_processor, "max_pixels", None) or get("longest_edge") or self.default_max_pixels)
        self.min_pixels = self.settings.min_pixels or processor_min
        self.max_pixels = self.settings.max_pixels or min(processor_max, self.default_max_pixels)
        # transformers 5 computes M-RoPE from mm_token_type_ids; 4.x from input_ids
        self.needs_mm_token_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters

    @classmethod
    def load_processor(cls, location: str, offline: bool, model_config: Any) -> Any:
        """The folder's processor, or an image-only one (its video processor
        needs torchvision)."""
        return hf_loading.load_image_only_processor(location, offline, cls.image_only_processor())

    @classmethod
    def image_only_processor(cls) -> type:
        """The family's processor class without its video processor."""
        return image_only_processor_class()

    def fallback_prompt(self, n_images: int, text: str) -> str:
        vision = "<|vision_start|><|image_pad|><|vision_end|>" * n_images
        return f"<|im_start|>user\n{vision}{text}<|im_end|>\n<|im_start|>assistant\n"

    def family_defaults(self) -> dict[str, Any]:
        # a 9-cell box at 28 px per cell is ~250 px of the resized image, 1-2x
        # the 14*16 px the encoder's attention windows cover
        return {"s_max": 9, "type2_threshold": 0.5}

    def zoomeye_defaults(self) -> ZoomEyeSettings:
        # ZoomEye fixes S = 448 for Qwen2.5-VL and starts its answering threshold at 0.95
        return ZoomEyeSettings(input_side=448, view="global_local", bias=0.6, patch_scale=1.2, upper=0.95,
                               decrements=(0.05, 0.1, 0.2))

    def view(self, image: Image.Image) -> VisualView:
        width, height = image.size
        new_h, new_w = smart_resize(
            height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
        shape = (new_h // self.factor, new_w // self.factor)
        return VisualView(images=[resized], geometry=GridGeometry.uniform(image.size, shape))

    def processor_inputs(self, views: Any, texts: Any, **kwargs: Any) -> Any:
        # the views are already within the budget; keep the processor from re-deciding
        budget = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        return super().processor_inputs(views, texts, size=budget, **kwargs)

    def before_forward(self, inputs: Mapping[str, Any]) -> None:
        if self.needs_mm_token_types and "mm_token_type_ids" not in inputs:
            raise FocusModelError(
                f"the processor returned no mm_token_type_ids; without them {self.description} falls back to 1-D "
                "positions. Load the model folder's own processor"
            )
        # the model keeps rope_deltas between calls; a stale value would
        # shift the positions of the next prompt
        deltas = None
        if not self.needs_mm_token_types and "pixel_values" not in inputs and "image_grid_thw" in inputs:
            # transformers 4.x decoding on from a cached prefill (continue_answer): the new positions
            # continue the prefill's M-RoPE offsets, which 4.x keeps only in rope_deltas
            _, deltas = self.model.model.get_rope_index(
                input_ids=inputs["input_ids"], image_grid_thw=inputs["image_grid_thw"],
                attention_mask=inputs.get("attention_mask"),
            )
            deltas = deltas.to(self.model.device)
        self.model.model.rope_deltas = deltas

    def prefix_state(self, inputs: Mapping[str, Any]) -> Any:
        # the prefill just computed each row's M-RoPE offset: text after the
        # image goes on from the image's largest position, not from its length
        deltas = self.model.model.rope_deltas
        if deltas is None:
            raise FocusModelError(f"{self.description} kept no rope_deltas after a prefill")
        return deltas.detach().reshape(-1, 1).clone()

    def continuation_kwargs(self, state: Any, start: int, length: int, batch: int) -> dict[str, Any]:
        # explicit positions: the model's own inference from rope_deltas differs between transformers versions
        steps = torch.arange(start, start + length, device=self.device).view(1, 1, -1)
        deltas = torch.zeros(1, dtype=torch.long) if state is None else state  # None: text only, no offset
        positions = steps + deltas.to(self.device).reshape(-1, 1, 1).expand(batch, 1, 1)
        return {"position_ids": positions.unsqueeze(0).expand(3, -1, -1, -1).reshape(3, batch, length)}

    def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray:
        positions = (input_ids == self.image_token_id).nonzero().flatten().numpy()
        rows, cols = view.geometry.shape
        if len(positions) != rows * cols:
            raise FocusModelError(
                f"expected {rows}x{cols}={rows * cols} image tokens after the {self.merge_size}x{self.merge_size} "
                f"merge but the prompt has "
                f"{len(positions)}; the processor resized the image differently"
            )
        return positions.reshape(rows, cols)
