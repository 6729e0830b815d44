"""``VisualView``: how one image is shown to a model, and where its tokens
land. Its own module because both the family contract (``base``) and the
shared plumbing (``runtime``) speak of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..grid import GridGeometry


@dataclass
class VisualView:
    """How one image is shown to the model, and where its tokens land."""

    images: list[Image.Image]
    """What goes to the processor for this image (already padded / resized)."""
    geometry: GridGeometry
    """The relevance grid over the original image."""
    rows: slice = field(default_factory=lambda: slice(None))
    cols: slice = field(default_factory=lambda: slice(None))
    """Which rows / columns of the model's full token grid the geometry keeps."""
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = ["VisualView"]
