"""Which layers should FOCUS read on a hybrid-attention model (Qwen3.5)?

Compares ``value_layers="all"`` (full-attention layers' cached values plus
the linear-attention layers' per-token values captured in the prefill) with
``"full_attention"`` (the cache's values only) on planted Qwen3.5 models:
the 8-layer test model and a 24-layer model with the released 3:1 layer
pattern, each with its layers damped (0: the planted signal alone) or at
full random strength (1: the signal must survive random layers), over the
contract tests' 18 scenes (wide, tall, square; the object at six edges).

Reports the peak-on-object rate, the map's mean inside the object over its
mean elsewhere, and the bytes each reading holds per prompt token.

    python -m tools.measure_hybrid_values
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np


def measure(folder: Path, value_layers: str) -> dict[str, float]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import PLACES, SIZES, object_box, peak_pixel, scene

    from focus_engine import load_mllm

    mllm = load_mllm(str(folder), settings={"value_layers": value_layers})
    hits, contrasts = 0, []
    for size in SIZES.values():
        for place in PLACES:
            box = object_box(size, place, 160)
            rmap = mllm.relevance_map(scene(size, box, seed=len(place)), "red")
            x, y = peak_pixel(rmap)
            hits += box[0] <= x < box[2] and box[1] <= y < box[3]
            full = rmap.to_image()
            inside = full[box[1]:box[3], box[0]:box[2]].mean()
            mask = np.ones_like(full, dtype=bool)
            mask[box[1]:box[3], box[0]:box[2]] = False
            contrasts.append(float(inside / max(full[mask].mean(), 1e-9)))
    prefill = mllm.prefill(scene((1500, 1500), (0, 0, 160, 160)), "red")
    captured = sum(v[0].numel() * v.element_size() for v in (prefill.layer_values or {}).values())
    cached = sum(prefill.cache.layers[i].values[0].numel() * prefill.cache.layers[i].values.element_size() * 2
                 for i in mllm.full_layers)
    return {"hits": hits, "scenes": len(SIZES) * len(PLACES), "contrast": float(np.median(contrasts)),
            "captured_bytes_per_token": captured / prefill.seq_len, "kv_bytes_per_token": cached / prefill.seq_len,
            "layers": list(prefill.map_layers(mllm.default_layers()))}


def main() -> None:
    from focus_engine.testing import build_planted_qwen3_5

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layers in (8, 24):
            for damping in (0.0, 1.0):
                folder = build_planted_qwen3_5(Path(tmp) / f"q{layers}-{damping}", seed=13, text_layers=layers,
                                               damping=damping)
                for value_layers in ("all", "full_attention"):
                    key = f"{layers} layers, damping {damping:g}, {value_layers}"
                    results[key] = measure(folder, value_layers)
                    print(key, json.dumps(results[key]), flush=True)


if __name__ == "__main__":
    main()
