"""Training views for the embedded demo model, cut from scenes of the
synthetic world (``focus_engine.bench.world``).

Each world item gives its global view (the whole scene letterboxed to the
encoder's side, what plain answering and the relevance map see) and crops
like the ROIs FOCUS proposes (2-3.5 grid cells on a side, around an object,
off-centre), each with the objects it shows in view pixels. A bank of views
is built once (rendering a 2K scene costs ~0.3 s) and saved as one ``.npz``
per shard; the trainer draws its samples from the views.

    python -m tools.demo_model_data --seed 1000 --n 900 --out /tmp/bank
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from focus_engine.bench.world import WorldItem, WorldSpec, generate_item
from focus_engine.images import letterbox

SIDE = 224  # encoder input side
CELLS = 16  # tokens per side (224 / patch 14)
PAD = (122, 116, 104)  # CLIP's mean colour, what the engine letterboxes with
OTHER_CROPS = 8
RANDOM_CROPS = 2


def _view(image: Image.Image, region: tuple[int, int, int, int], objects: list[Any]) -> dict[str, Any]:
    """``region`` of the scene letterboxed to SIDE, with the objects inside it
    (at least half visible) in view coordinates."""
    x0, y0, x1, y1 = region
    canvas, (cw, ch) = letterbox(image.crop(region), SIDE, PAD)
    scale = SIDE / max(x1 - x0, y1 - y0)
    ox, oy = (SIDE - cw) // 2, (SIDE - ch) // 2
    shown = []
    for index, obj in enumerate(objects):
        bx0, by0, bx1, by1 = obj.box
        ix0, iy0, ix1, iy1 = max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        visible = (ix1 - ix0) * (iy1 - iy0) / ((bx1 - bx0) * (by1 - by0))
        if visible < 0.5:
            continue
        box = [ox + (ix0 - x0) * scale, oy + (iy0 - y0) * scale, ox + (ix1 - x0) * scale, oy + (iy1 - y0) * scale]
        shown.append({"index": index, "box": [round(v, 1) for v in box], "size": obj.size * scale,
                      "visible": round(visible, 2)})
    return {"pixels": np.asarray(canvas, dtype=np.uint8), "objects": shown}


def _crop_region(rng: np.random.Generator, size: tuple[int, int], centre: tuple[float, float],
                 cells: float) -> tuple[int, int, int, int]:
    """A square region ``cells`` grid cells wide around ``centre`` (jittered),
    clipped to the scene, as a FOCUS ROI would be."""
    width, height = size
    side = cells * max(width, height) / CELLS
    cx = centre[0] + rng.uniform(-0.3, 0.3) * side
    cy = centre[1] + rng.uniform(-0.3, 0.3) * side
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    return x0, y0, max(x1, x0 + 8), max(y1, y0 + 8)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def item_views(item: WorldItem, rng: np.random.Generator) -> list[dict[str, Any]]:
    image, objects = item.image, item.objects
    width, height = image.size
    views = [{"kind": "global", "focus": None, **_view(image, (0, 0, width, height), objects)}]
    target_indices = [next(i for i, o in enumerate(objects) if tuple(o.box) == tuple(box))
                      for box in item.target_boxes]
    for index in target_indices:
        for _ in range(2):
            region = _crop_region(rng, (width, height), _centre(objects[index].box), rng.uniform(1.8, 3.6))
            views.append({"kind": "crop", "focus": index, **_view(image, region, objects)})
    if len(item.target_boxes) == 2:  # the union crop FOCUS answers spatial questions on
        boxes = np.array(item.target_boxes)
        cell = max(width, height) / CELLS
        region = (int(max(0, boxes[:, 0].min() - cell)), int(max(0, boxes[:, 1].min() - cell)),
                  int(min(width, boxes[:, 2].max() + cell)), int(min(height, boxes[:, 3].max() + cell)))
        views.append({"kind": "union", "focus": None, **_view(image, region, objects)})
    others = [i for i in range(len(objects)) if i not in target_indices]
    for index in rng.choice(others, size=min(OTHER_CROPS, len(others)), replace=False):
        region = _crop_region(rng, (width, height), _centre(objects[int(index)].box), rng.uniform(1.6, 3.6))
        views.append({"kind": "crop", "focus": int(index), **_view(image, region, objects)})
    for _ in range(RANDOM_CROPS):
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        views.append({"kind": "random", "focus": None,
                      **_view(image, _crop_region(rng, (width, height), centre, rng.uniform(1.6, 3.6)), objects)})
    return views


def build_shard(args: tuple[int, int, int, str]) -> str:
    seed, start, count, out = args
    spec = WorldSpec()
    pixels, records = [], []
    for index in range(start, start + count):
        item = generate_item(spec, seed, index)
        rng = np.random.default_rng([seed, index, 7])
        scene = {
            "question": item.question, "options": item.options, "answer": item.answer, "subtype": item.subtype,
            "targets": item.target_names, "size": list(item.image.size),
            "objects": [o.to_json() for o in item.objects],
            "target_boxes": [list(b) for b in item.target_boxes], "views": [],
        }
        for view in item_views(item, rng):
            scene["views"].append({"kind": view["kind"], "focus": view["focus"], "objects": view["objects"],
                                   "pixels": len(pixels)})
            pixels.append(view["pixels"])
        records.append(scene)
    path = Path(out) / f"shard_{seed}_{start:06d}.npz"
    np.savez(path, pixels=np.stack(pixels), records=np.frombuffer(json.dumps(records).encode(), dtype=np.uint8))
    return str(path)


def load_bank(folder: str | Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All shards of ``folder``: one pixel array and the scene records (their
    views' ``pixels`` index the array)."""
    arrays, records = [], []
    offset = 0
    for path in sorted(Path(folder).glob("shard_*.npz")):
        data = np.load(path)
        scenes = json.loads(bytes(data["records"]).decode())
        for scene in scenes:
            for view in scene["views"]:
                view["pixels"] += offset
        arrays.append(data["pixels"])
        records.extend(scenes)
        offset += len(data["pixels"])
    return np.concatenate(arrays), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--shard", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(args.seed, start, min(args.shard, args.n - start), args.out) for start in range(0, args.n, args.shard)]
    with multiprocessing.Pool(args.workers) as pool:
        for path in pool.imap_unordered(build_shard, jobs):
            print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
