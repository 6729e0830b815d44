"""What the FOCUS nodes share: the socket payloads and IMAGE/MASK conversion.

IMAGE is ``[B, H, W, C]`` float32 in 0..1, MASK ``[B, H, W]`` float32 in 0..1.
FOCUS_RELEVANCE and FOCUS_ROIS hold one entry per image of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import bridge


@dataclass
class RelevanceBatch:
    """FOCUS_RELEVANCE: per image, target -> RelevanceMap; plus the model
    family's ROI defaults (the ROI node has no model input)."""

    maps: list[dict[str, Any]]
    family_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoiBatch:
    """FOCUS_ROIS: per image, its ROIs (original pixels) and its size."""

    rois: list[list[Any]]
    image_sizes: list[tuple[int, int]]
    selected: list[list[Any]] | None = None


def boxes_json(rois: Sequence[Sequence[Any]], selected: Sequence[Sequence[Any]] | None = None) -> str:
    """The ROIs as a JSON STRING for other nodes and scripts: one entry per
    image, boxes in original pixels ``[x0, y0, x1, y1]`` (exclusive right/bottom)."""
    import json

    images = []
    for index, per_image in enumerate(rois):
        chosen = {id(r) for r in selected[index]} if selected is not None else set()
        images.append({"image": index, "rois": [
            {"box": [int(v) for v in r.box], "target": r.target, "score": round(float(r.score), 4),
             "confidence": None if r.confidence is None else round(float(r.confidence), 4),
             "selected": id(r) in chosen}
            for r in per_image
        ]})
    return json.dumps(images)


def image_items(image: Any) -> list[Any]:
    """A ComfyUI IMAGE batch as a list of ``[H, W, C]`` tensors."""
    if image is None or getattr(image, "ndim", 0) != 4 or image.shape[0] == 0:
        shape = tuple(getattr(image, "shape", ()))
        raise ValueError(f"expected an IMAGE batch [B, H, W, C], got {shape or type(image).__name__}")
    return [image[i] for i in range(image.shape[0])]


def check_batch(what: str, count: int, images: int) -> None:
    if count != images:
        raise ValueError(
            f"{what} holds {count} image(s) but the IMAGE batch has {images}; connect the same image batch "
            "to every FOCUS node of one chain"
        )


def to_image_tensor(arrays: Sequence[np.ndarray]) -> Any:
    """uint8 or float HWC arrays of one size -> IMAGE tensor."""
    import torch

    stacked = np.stack([a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a for a in arrays])
    return torch.from_numpy(stacked.astype(np.float32))


def to_mask_tensor(masks: Sequence[np.ndarray]) -> Any:
    import torch

    return torch.from_numpy(np.stack([m.astype(np.float32) for m in masks]))


def pad_to_common_size(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Images of different sizes (crops) padded with black to one size, as a batch needs."""
    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    out = []
    for a in arrays:
        canvas = np.zeros((height, width, a.shape[2]), dtype=a.dtype)
        canvas[: a.shape[0], : a.shape[1]] = a
        out.append(canvas)
    return out


def run_per_image(count: int, work: Callable[[int], Any], bar: Any = None) -> list[Any]:
    """``work(i)`` for each image, with ComfyUI's progress bar (one step per
    image unless the caller's ``bar`` counts finer steps) and an interruption
    check between model calls; engine errors become node errors."""
    from ..focus_engine.errors import FocusError

    own_bar = bar is None
    bar = bridge.progress_bar(count) if own_bar else bar
    results = []
    for index in range(count):
        bridge.throw_if_interrupted()
        try:
            results.append(work(index))
        except FocusError as exc:
            raise ValueError(f"FOCUS: {exc}") from None
        except InterruptedError:
            bridge.throw_if_interrupted()  # ComfyUI's own interruption, so it reports a cancel
            raise
        if own_bar:
            bar.update(1)
    return results
