"""Helpers shared by the tests (importable: pyproject puts tests/ on the path)."""

from __future__ import annotations

from PIL import Image

from focus_engine.demo import synthetic_scene


def scene(
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    colour: str = "red",
    distractors: int = 12,
    seed: int = 0,
) -> Image.Image:
    """A grey scene with one ``colour`` square at ``box`` and distractors."""
    return synthetic_scene(size, box, colour=colour, distractors=distractors, seed=seed)
