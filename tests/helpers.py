"""Helpers shared by the tests (importable: pyproject puts tests/ on the path)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from focus_engine.testing import synthetic_scene


def scene(
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    colour: str = "red",
    distractors: int = 12,
    seed: int = 0,
) -> Image.Image:
    """A grey scene with one ``colour`` square at ``box`` and distractors."""
    return synthetic_scene(size, box, colour=colour, distractors=distractors, seed=seed)


SIZES = {"wide": (2400, 900), "tall": (900, 2400), "square": (1500, 1500)}
"""Image shapes every family's localisation is tested on."""
PLACES = ("left", "right", "top", "bottom", "top-left", "bottom-right")
"""Where the object sits: touching these edges (centred on the other axis)."""


def object_box(size: tuple[int, int], place: str, side: int) -> tuple[int, int, int, int]:
    """A ``side``-pixel square touching the named edge(s) of an image of ``size``."""
    width, height = size
    x, y = (width - side) // 2, (height - side) // 2
    x = 0 if "left" in place else (width - side if "right" in place else x)
    y = 0 if "top" in place else (height - side if "bottom" in place else y)
    return x, y, x + side, y + side


def peak_pixel(rmap) -> tuple[int, int]:
    """(x, y) of the maximum of the map at image resolution."""
    full = rmap.to_image()
    y, x = np.unravel_index(int(np.argmax(full)), full.shape)
    return int(x), int(y)


def covers_centre(box, target) -> bool:
    """Whether ``box`` contains the centre of ``target``."""
    cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
    return box[0] <= cx < box[2] and box[1] <= cy < box[3]


BOXES = [(1000, 100, 1100, 200), (50, 500, 150, 600), (600, 300, 700, 400)]
"""Where the red square of each image of ``image_batch`` is."""


def image_batch(n: int):
    """A ComfyUI IMAGE batch ``[n, 700, 1200, 3]`` of scenes with a red square at BOXES[i]."""
    import torch

    arrays = [np.asarray(scene((1200, 700), BOXES[i], seed=i), np.float32) / 255.0 for i in range(n)]
    return torch.from_numpy(np.stack(arrays))
