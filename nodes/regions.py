"""FOCUS regions in the types other nodes take: BOUNDING_BOX for ComfyUI's
core detection nodes, BBOX for SAM 2, SEGS for Impact Pack's detailers.
Built here from their published formats; nothing of theirs is imported.

BOUNDING_BOX (ComfyUI core since 0.15: ``comfy_api``'s ``io.BoundingBox``,
a ``{"x", "y", "width", "height"}`` dict of pixel ints, top-left corner and
size): one list of dicts per image of the batch, as core's detectors (SAM3
Detect, RT-DETR) emit them and as SAM3 Detect, Draw BBoxes and Crop By
Bounding Boxes read a batch; each dict also carries the detectors' optional
``score`` and ``label`` keys.

BBOX (kijai's ComfyUI-segment-anything-2, ``Sam2Segmentation.bboxes``): a
list of ``[x0, y0, x1, y1]`` boxes in the image's pixels, images in batch
order, the same layout its Florence2toCoordinates node produces. Its
single-image segmentor turns each box into one object with
``individual_objects`` on (off, it takes the last box only).

SEGS (Impact Pack): ``((height, width), [SEG, ...])`` for one image, each SEG
a namedtuple ``(cropped_image, cropped_mask, confidence, crop_region, bbox,
label, control_net_wrapper)``: ``bbox`` the region, ``crop_region`` the
region with context around it (clipped to the image), ``cropped_image`` the
``[1, h, w, 3]`` crop of the image at ``crop_region`` (None where the node
has no image, as Impact's own mask-to-SEGS leaves it), ``cropped_mask`` a
float32 ``h × w`` array, 1 inside ``bbox``.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from ..focus_engine.boxes import scale_box_about_centre

SEG = namedtuple(
    "SEG", ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label", "control_net_wrapper"],
    defaults=[None],
)
"""Impact Pack's SEG, field for field."""

CROP_FACTOR = 1.5
"""``crop_region`` is the box grown to this many times its size (Impact's
detectors take 1.5-3): the detailer redraws the region with some context."""


def bbox_list(per_image: Sequence[Sequence[Any]], sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
    """BBOX: every ROI's box as ``[x0, y0, x1, y1]`` pixels, images in order.
    An image without regions (the gate answered on the whole image) gives
    the whole image's box: Sam2Segmentation fails on an empty BBOX."""
    boxes = []
    for rois, (width, height) in zip(per_image, sizes):
        boxes += [[int(v) for v in roi.box] for roi in rois] or [[0, 0, int(width), int(height)]]
    return boxes


def core_boxes(per_image: Sequence[Sequence[Any]], sizes: Sequence[tuple[int, int]]) -> list[list[dict[str, Any]]]:
    """BOUNDING_BOX: per image, every ROI as ``{"x", "y", "width", "height"}``
    (pixel ints) with ``score`` (its verification confidence, else its
    relevance) and ``label`` (its target). An image without regions (the gate
    answered on the whole image) gives the whole image's box, as BBOX does."""
    batch = []
    for rois, (width, height) in zip(per_image, sizes):
        boxes = []
        for roi in rois:
            x0, y0, x1, y1 = (int(v) for v in roi.box)
            score = roi.confidence if roi.confidence is not None else roi.score
            boxes.append({"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "score": float(score),
                          "label": roi.target})
        batch.append(boxes or [{"x": 0, "y": 0, "width": int(width), "height": int(height)}])
    return batch


def segs(rois: Sequence[Any], size: tuple[int, int], image: Any = None) -> tuple[tuple[int, int], list[SEG]]:
    """SEGS of one image of ``size`` (width, height) from its ROIs; ``image``
    (an IMAGE tensor ``[1, H, W, 3]``) gives the crops."""
    width, height = int(size[0]), int(size[1])
    items = []
    for roi in rois:
        bbox = [int(v) for v in roi.box]
        region = list(scale_box_about_centre(bbox, CROP_FACTOR, (width, height)))
        cx0, cy0, cx1, cy1 = region
        mask = np.zeros((cy1 - cy0, cx1 - cx0), np.float32)
        mask[bbox[1] - cy0:bbox[3] - cy0, bbox[0] - cx0:bbox[2] - cx0] = 1.0
        confidence = roi.confidence if roi.confidence is not None else roi.score
        # a copy: detailers paste into crops, and the user's IMAGE must stay as it is
        crop = None if image is None else image[:, cy0:cy1, cx0:cx1, :].clone()
        items.append(SEG(crop, mask, float(confidence), region, bbox, roi.target))
    return (height, width), items


BBOX_TIP = (
    "The regions as BBOX for SAM 2 (kijai's Sam2Segmentation 'bboxes'): [x0, y0, x1, y1] pixel boxes, images in "
    "order (an image without regions: its whole box); turn Sam2Segmentation's individual_objects on to segment "
    "each (off, it takes the last)."
)
CORE_BOX_TIP = (
    "The regions as ComfyUI's core BOUNDING_BOX (for SAM3 Detect, Draw BBoxes, Crop By Bounding Boxes: ComfyUI "
    "0.15 and later): per image a list of {x, y, width, height} pixel boxes with score and label (an image "
    "without regions: its whole box)."
)
SEGS_TIP = (
    "The regions of the first image as Impact Pack SEGS (label = target, confidence = verification score), with "
    "1.5x context in each crop region, for its detailers."
)


def region_outputs(per_image: Sequence[Sequence[Any]], sizes: Sequence[tuple[int, int]], image: Any = None
                   ) -> tuple[list[list[int]], tuple[tuple[int, int], list[SEG]], list[list[dict[str, Any]]]]:
    """The nodes' BBOX, SEGS (the first image's; ``image``, an IMAGE batch,
    gives its crops) and BOUNDING_BOX of the same regions, in that order."""
    first_image = None if image is None else image[:1]
    return bbox_list(per_image, sizes), segs(per_image[0], sizes[0], first_image), core_boxes(per_image, sizes)


def region_tips(which: str) -> tuple[str, str, str]:
    """The tooltips of ``region_outputs``' three outputs, each saying which regions they are."""
    return f"{which}; " + BBOX_TIP, f"{which}; " + SEGS_TIP, f"{which}; " + CORE_BOX_TIP
