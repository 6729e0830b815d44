"""Image input handling: any supported input becomes an RGB PIL image.

Accepted: PIL images in any mode, numpy arrays (HW, HWC with 1/3/4 channels,
uint8 / uint16 / float in 0..1), and torch tensors laid out like numpy (a
ComfyUI IMAGE item ``[H, W, C]`` float 0..1, or ``[1, H, W, C]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .boxes import BoxLike, clamp_box
from .errors import FocusInputError

MIN_IMAGE_SIDE = 16
"""Smaller images cannot be split into ROIs meaningfully."""

Image.MAX_IMAGE_PIXELS = None  # high-resolution inputs are the point; size is checked by us

_BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


def to_pil_rgb(image: Any, *, what: str = "image", min_side: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Return ``image`` as an RGB PIL image, or raise FocusInputError saying why
    not. ``min_side=1`` for crops the model only looks at."""
    if image is None:
        raise FocusInputError(f"no {what} was given: pass a PIL image, a numpy array or an IMAGE tensor")
    if isinstance(image, Image.Image):
        pil = _pil_to_rgb(image)
    else:
        pil = Image.fromarray(_array_to_uint8(_as_numpy(image, what), what))
    width, height = pil.size
    if min(width, height) < min_side:
        raise FocusInputError(
            f"the {what} is {width}x{height} px; FOCUS needs at least {min_side} px on each side "
            "to crop regions from it"
        )
    return pil


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16/32-bit and float images: PIL's own convert clips at 255, so scale.
        return Image.fromarray(_array_to_uint8(np.asarray(image), "image")).convert("RGB")
    return image.convert("RGB")


def _as_numpy(image: Any, what: str) -> np.ndarray:
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, without importing torch
        image = image.detach().cpu()
        if str(image.dtype) == "torch.bfloat16":
            image = image.float()
        image = image.numpy()
    if not isinstance(image, np.ndarray):
        raise FocusInputError(
            f"the {what} is a {type(image).__name__}; pass a PIL image, a numpy array (HWC) or an IMAGE tensor"
        )
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise FocusInputError(
                f"the {what} is a batch of {image.shape[0]} images; pass one image at a time"
            )
        image = image[0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise FocusInputError(
            f"the {what} has shape {tuple(image.shape)}; expected HxW or HxWxC with C in 1, 3, 4"
        )
    if image.size == 0:
        raise FocusInputError(f"the {what} is empty (shape {tuple(image.shape)})")
    return image


def _array_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """HW / HWC array of any numeric dtype -> uint8 HW or HWC RGB(A)-composited RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == bool:
        out = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise FocusInputError(f"the {what} contains NaN or infinite values")
        peak = float(array.max()) if array.size else 0.0
        scale = 255.0 if peak <= 1.0 else (255.0 / peak if peak > 255.0 else 1.0)
        out = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        peak = int(array.max()) if array.size else 0
        if peak > 255:
            # scale by the smallest full bit depth that holds the data (12-bit, 16-bit, ...)
            full = float(2 ** int(np.ceil(np.log2(peak + 1))) - 1)
            out = np.clip(array.astype(np.float32) * (255.0 / full), 0, 255).round().astype(np.uint8)
        else:
            out = np.clip(array, 0, 255).astype(np.uint8)
    else:
        raise FocusInputError(f"the {what} has unsupported dtype {array.dtype}")
    if out.ndim == 3 and out.shape[2] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        rgb = out[:, :, :3].astype(np.float32) * alpha + np.array(_BACKGROUND, np.float32) * (1 - alpha)
        out = rgb.round().astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def letterbox(image: Image.Image, canvas_side: int, fill: tuple[int, int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Resize ``image`` to fit a ``canvas_side`` square (aspect ratio kept) and
    paste it centred on a square filled with ``fill``.

    Equivalent to LLaVA's pad-to-square-then-resize, but it never materialises
    the padded full-resolution square (a 10000² image stays cheap).
    Returns the canvas and the content size ``(w, h)`` on it.
    """
    width, height = image.size
    scale = canvas_side / max(width, height)
    content = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(content, Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (canvas_side, canvas_side), fill)
    canvas.paste(resized, ((canvas_side - content[0]) // 2, (canvas_side - content[1]) // 2))
    return canvas, content


def crop(image: Image.Image, box: BoxLike) -> Image.Image:
    """Crop ``box`` (x0, y0, x1, y1, exclusive) after clamping it to the image."""
    return image.crop(clamp_box(box, image.size))
