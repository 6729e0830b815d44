"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): global + local.

One image becomes a 384-px base view (skipped by FOCUS) plus AnyRes local
crops of a best-fit canvas. The model stitches the crops' patch grids
row-major into one grid over the canvas, removes the rows / columns of
padding ("unpad"), shrinks grids above ``anyres_max_N`` crops bilinearly, and
appends a newline token per row. The relevance grid is that local grid with
the newline tokens dropped; its cells are placed in the original image by
undoing the same steps. The library's own helpers decide the canvas and the
unpadding, so the layout follows the model exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ZoomEyeSettings
from ..errors import FocusConfigError, FocusModelError
from ..grid import GridGeometry, RelevanceMap
from ..relevance import normalise_grid
from . import hf_loading
from .base import MLLM, FamilySettings, VisualView


@dataclass(frozen=True)
class OnevisionSettings(FamilySettings):
    map_blur_sigma: float = 1.0
    """[ours] Gaussian blur (in cells) of the local-crop map."""
    max_grid_side: int = 60
    """[ours] The map is block-averaged to at most this many cells on its long side."""

    def check(self) -> None:
        if self.map_blur_sigma < 0:
            raise FocusConfigError(f"map_blur_sigma={self.map_blur_sigma!r}: must be >= 0")
        if self.max_grid_side < 1:
            raise FocusConfigError(f"max_grid_side={self.max_grid_side!r}: must be at least 1")


def image_only_processor_class() -> type:
    """A LLaVA-OneVision processor without the video processor (which needs
    torchvision): FOCUS only sends images."""
    return hf_loading.image_only_processor_class(
        "LlavaOnevisionProcessor", video_token="<video>", settings={
            "num_image_tokens": None, "vision_feature_select_strategy": None, "image_token": "<image>",
            "vision_aspect_ratio": "anyres_max_9",
        },
    )


class LlavaOnevisionAdapter(MLLM):
    family = "llava_onevision"
    description = "LLaVA-OneVision (LlavaOnevisionForConditionalGeneration)"
    paper_layers = {28: (21, 28)}  # LLaVA-OV-7B (Qwen2-7B, 28 layers), FOCUS.md
    Settings = OnevisionSettings
    settings: OnevisionSettings

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        vision = model.config.vision_config
        self.crop_side = int(vision.image_size)
        self.patches_per_side = self.crop_side // int(vision.patch_size)
        self.pinpoints = [list(p) for p in model.config.image_grid_pinpoints]
        self.max_crops = int(str(getattr(model.config, "vision_aspect_ratio", "anyres_max_9")).replace("anyres_max_", ""))
        self.base_tokens = self.patches_per_side**2

    def fallback_prompt(self, n_images: int, text: str) -> str:
        images = (self.image_token + "\n") * n_images
        return f"<|im_start|>user {images}{text}<|im_end|><|im_start|>assistant\n"

    @classmethod
    def load_processor(cls, location: str, offline: bool, model_config: Any) -> Any:
        """The folder's processor, or an image-only one (its video processor
        needs torchvision); a folder saved without processor_config.json
        takes the processor settings the model config implies."""
        vision = model_config.vision_config
        implied = {
            "num_image_tokens": (int(vision.image_size) // int(vision.patch_size)) ** 2,
            "vision_feature_select_strategy": getattr(model_config, "vision_feature_select_strategy", "full"),
            "vision_aspect_ratio": getattr(model_config, "vision_aspect_ratio", "anyres_max_9"),
        }
        return hf_loading.load_image_only_processor(location, offline, image_only_processor_class(), defaults=implied)

    def family_defaults(self) -> dict[str, Any]:
        # 9 working-grid cells span 1-2x the 384 px crop on 2-4K images (FOCUS.md: OV s_max 9)
        # the answer: the global image with the ROIs drawn, then the top ROI of each
        # target as its own image (the paper's interleaved prompt, FOCUS.md stage 4)
        return {"s_max": 9, "type2_threshold": 0.5, "answer_crops": "per_target", "answer_with_global": True}

    @classmethod
    def paper_settings(cls, dataset: str) -> dict[str, Any]:
        # Tab. 7: 30 anchors whatever n_steps, s_dist 2, s_max 9 on V*Bench and 5 elsewhere
        return {"anchor_spacing": 2.0, "s_max": 9 if dataset == "vstar" else 5, "n_anchors": 30}

    def zoomeye_defaults(self) -> ZoomEyeSettings:
        # ZoomEye's global + local setting: whole image with the box, then the crop; b = 0.6
        return ZoomEyeSettings(input_side=self.crop_side, view="global_local", bias=0.6, patch_scale=1.2)

    def view(self, image: Image.Image) -> VisualView:
        from transformers.image_processing_utils import select_best_resolution

        width, height = image.size
        canvas_h, canvas_w = select_best_resolution((height, width), self.pinpoints)
        # the processor fits the image into the canvas; shrinking it first to
        # that size changes nothing for the model and bounds memory on huge inputs
        fit_h, fit_w = _fit_size((height, width), (canvas_h, canvas_w))
        shown = image
        if fit_h * fit_w < height * width:
            shown = image.resize((fit_w, fit_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
            if select_best_resolution((fit_h, fit_w), self.pinpoints) != (canvas_h, canvas_w):
                shown = image  # keep the processor's choice exact if shrinking would change it
        geometry, extra = self._local_grid(image.size, shown.size, (canvas_h, canvas_w))
        return VisualView(images=[shown], geometry=geometry, extra=extra)

    def _local_grid(
        self, image_size: tuple[int, int], shown_size: tuple[int, int], canvas: tuple[int, int]
    ) -> tuple[GridGeometry, dict[str, Any]]:
        """Cells of the model's local grid in original pixels: stitched canvas
        grid -> unpad (the model's own function) -> optional bilinear shrink."""
        from transformers.models.llava_onevision.modeling_llava_onevision import unpad_image

        canvas_h, canvas_w = canvas
        shown_w, shown_h = shown_size
        rows = self.patches_per_side * canvas_h // self.crop_side
        cols = self.patches_per_side * canvas_w // self.crop_side
        # which canvas rows / columns survive the model's unpadding: run it on an index grid
        index = torch.arange(rows * cols, dtype=torch.float32).reshape(1, rows, cols)
        kept = unpad_image(index, (shown_h, shown_w))[0].long()
        row0, col0 = int(kept[0, 0]) // cols, int(kept[0, 0]) % cols
        kept_rows, kept_cols = kept.shape
        fit_h, fit_w = _fit_size((shown_h, shown_w), canvas)
        off_y, off_x = (canvas_h - fit_h) // 2, (canvas_w - fit_w) // 2
        cell_y, cell_x = canvas_h / rows, canvas_w / cols
        width, height = image_size
        y_edges = ((row0 + np.arange(kept_rows + 1)) * cell_y - off_y) * (height / fit_h)
        x_edges = ((col0 + np.arange(kept_cols + 1)) * cell_x - off_x) * (width / fit_w)
        ratio = math.sqrt(kept_rows * kept_cols / (self.max_crops * self.patches_per_side**2))
        if ratio > 1.1:  # the model shrinks the grid bilinearly (align_corners=False)
            new_rows, new_cols = int(kept_rows // ratio), int(kept_cols // ratio)
            y_edges = np.interp(np.linspace(0, kept_rows, new_rows + 1), np.arange(kept_rows + 1), y_edges)
            x_edges = np.interp(np.linspace(0, kept_cols, new_cols + 1), np.arange(kept_cols + 1), x_edges)
            kept_rows, kept_cols = new_rows, new_cols
        geometry = GridGeometry(
            x_edges=np.clip(x_edges, 0.0, float(width)), y_edges=np.clip(y_edges, 0.0, float(height)),
            image_size=(int(width), int(height)),
        )
        return geometry, {"local_shape": (kept_rows, kept_cols)}

    def refine_map(self, rmap: RelevanceMap) -> RelevanceMap:
        """[ours] Gaussian blur, then block-average down to a working grid of
        at most ``settings.max_grid_side`` cells on the long side."""
        grid = rmap.raw if rmap.raw is not None else rmap.grid
        grid = _gaussian_blur(grid.astype(np.float64), self.settings.map_blur_sigma)
        factor = max(1, math.ceil(max(grid.shape) / self.settings.max_grid_side))
        geometry = rmap.geometry
        if factor > 1:
            grid, geometry = _block_mean(grid, geometry, factor)
        return RelevanceMap(
            target=rmap.target, grid=normalise_grid(grid), geometry=geometry, source=rmap.source,
            layers=rmap.layers, tokens=rmap.tokens, raw=grid.astype(np.float32),
        )

    def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray:
        positions = (input_ids == self.image_token_id).nonzero().flatten().numpy()
        rows, cols = view.extra["local_shape"]
        expected = self.base_tokens + rows * (cols + 1)
        if len(positions) != expected:
            raise FocusModelError(
                f"expected {expected} image tokens ({self.base_tokens} base + {rows}x{cols} local + {rows} "
                f"newlines) but the prompt has {len(positions)}; the processor and the model config disagree"
            )
        local = positions[self.base_tokens :].reshape(rows, cols + 1)
        return local[:, :cols]  # the last token of each row is the newline


def _fit_size(size: tuple[int, int], canvas: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) the processor resizes ``size`` to inside ``canvas``."""
    from transformers.image_processing_utils import get_patch_output_size

    height, width = size
    shape_only = np.broadcast_to(np.zeros(1, np.uint8), (1, height, width))  # no pixel memory
    return get_patch_output_size(shape_only, canvas, input_data_format="channels_first")


def _gaussian_blur(grid: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur in cell units (edges replicated)."""
    if sigma <= 0:
        return grid
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(grid, radius, mode="edge")
    rows = np.apply_along_axis(lambda v: np.convolve(v, taps, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda v: np.convolve(v, taps, mode="valid"), 0, rows)


def _block_mean(grid: np.ndarray, geometry: GridGeometry, factor: int) -> tuple[np.ndarray, GridGeometry]:
    """Average ``factor`` x ``factor`` blocks (the last ones may be smaller)."""
    rows, cols = grid.shape
    row_starts, col_starts = np.arange(0, rows, factor), np.arange(0, cols, factor)
    summed = np.add.reduceat(np.add.reduceat(grid, row_starts, axis=0), col_starts, axis=1)
    counts = np.outer(np.diff(np.append(row_starts, rows)), np.diff(np.append(col_starts, cols)))
    y_edges = np.append(geometry.y_edges[row_starts], geometry.y_edges[-1])
    x_edges = np.append(geometry.x_edges[col_starts], geometry.x_edges[-1])
    return summed / counts, GridGeometry(x_edges=x_edges, y_edges=y_edges, image_size=geometry.image_size)
