"""LLaVA-1.5 (``LlavaForConditionalGeneration``): one global view, a square
grid of patch tokens (24x24 at 336 px / patch 14).

The HF processor resizes the short side and centre-crops, which would cut the
sides of a wide or tall image off the map. We letterbox instead: the image is
padded, centred, to a square with the processor's mean colour, as the original
LLaVA's ``expand2square`` did; grid cells wholly over the padding are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ZoomEyeSettings
from ..errors import FocusModelError
from ..grid import GridGeometry
from ..images import letterbox
from .base import MLLM, VisualView


class LlavaAdapter(MLLM):
    family = "llava"
    description = "LLaVA-1.5 (LlavaForConditionalGeneration)"
    paper_layers = {32: (14, 32)}  # LLaVA-1.5-7B, FOCUS.md

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        vision = model.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.canvas_side = _processor_side(processor.image_processor, int(vision.image_size))
        if self.canvas_side % self.patch_size:
            raise FocusModelError(
                f"the processor's image side {self.canvas_side} is not a multiple of the patch size {self.patch_size}"
            )
        self.tokens_per_side = self.canvas_side // self.patch_size
        mean = getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
        self.pad_colour = tuple(int(round(float(m) * 255)) for m in mean[:3])

    def family_defaults(self) -> dict[str, Any]:
        # a 5-cell box at 24 cells per side spans 1-2x the 336 px encoder input
        # on typical 2-4K images (FOCUS.md); other grids keep the boxes' share
        # of the image (16 cells: 2..3)
        scale = self.tokens_per_side / 24
        s_min = max(1, round(3 * scale))
        return {"s_min": s_min, "s_max": max(s_min, round(5 * scale)), "type2_threshold": 0.6}

    @classmethod
    def paper_settings(cls, dataset: str) -> dict[str, Any]:
        # Tab. 7: anchors by the n_steps rule, s_dist 2 on V*Bench and 3 elsewhere, s_max 5
        return {"anchor_spacing": 2.0 if dataset == "vstar" else 3.0, "s_max": 5, "n_anchors": None}

    def zoomeye_defaults(self) -> ZoomEyeSettings:
        # ZoomEye's "local" LLaVA-1.5 setting: the node's crop alone, no enlargement, b = 0.2
        return ZoomEyeSettings(input_side=self.canvas_side, view="local", bias=0.2, patch_scale=None)

    def view(self, image: Image.Image) -> VisualView:
        canvas, content = letterbox(image, self.canvas_side, self.pad_colour)
        side, cells = self.canvas_side, self.tokens_per_side
        geometry, rows, cols = GridGeometry.from_letterbox(image.size, content, (side, side), (cells, cells))
        return VisualView(images=[canvas], geometry=geometry, rows=rows, cols=cols)

    def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray:
        positions = (input_ids == self.image_token_id).nonzero().flatten().numpy()
        cells = self.tokens_per_side**2
        if len(positions) == cells + 1:  # "full" feature strategy keeps the CLS token first
            positions = positions[1:]
        if len(positions) != cells:
            raise FocusModelError(
                f"expected {cells} image tokens ({self.tokens_per_side}x{self.tokens_per_side}) but the "
                f"prompt has {len(positions)}; the processor and the vision config disagree"
            )
        return positions.reshape(self.tokens_per_side, self.tokens_per_side)[view.rows, view.cols]


def _processor_side(image_processor: Any, fallback: int) -> int:
    """The square side the image processor feeds the encoder."""
    crop = getattr(image_processor, "crop_size", None)
    size = getattr(image_processor, "size", None)
    for spec in (crop, size):
        if spec is None:
            continue
        getter = spec.get if isinstance(spec, dict) else lambda key, s=spec: getattr(s, key, None)
        for key in ("height", "shortest_edge"):
            value = getter(key)
            if value:
                return int(value)
    return fallback
