"""Engine speed and memory benchmark (numbers go in issue notes, not in tests).

1. ``overhead``: for a 576-visual-token LLaVA-1.5 prompt, the time of the
   prefill (one forward pass with cache) vs everything after it: relevance
   from the cache, anchors, expansion, NMS. Target: <= 5 % of the prefill.
2. ``memory``: peak memory of a FOCUS run vs a plain answer on the same image,
   each in a fresh subprocess (process RSS on CPU, max allocated on CUDA).
   Target: FOCUS <= 1.2x plain.

The model is random (undamped) LLaVA-1.5 geometry (336 px, 24x24 tokens) with
a configurable width/depth, built locally and loaded with ``load_mllm``.

    python benchmarks/bench_engine.py --hidden 1024 --layers 32 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path



def build(folder: Path, args: argparse.Namespace) -> None:
    from focus_engine.testing import build_planted_llava

    build_planted_llava(
        folder, seed=0, damping=1.0, neutral_words=False, vision_hidden=args.vision_hidden,
        vision_layers=args.vision_layers, text_hidden=args.hidden, text_layers=args.layers,
        heads=max(2, args.hidden // 128), kv_heads=max(2, args.hidden // 128),
    )


def bench_overhead(folder: Path, device: str, dtype: str, repeats: int) -> dict:
    import torch

    from focus_engine import load_mllm, resolve_config
    from focus_engine.relevance import relevance_from_prefill
    from focus_engine.rois import propose_for_maps
    from focus_engine.testing import synthetic_scene

    mllm = load_mllm(str(folder), device=device, dtype=dtype)
    config = resolve_config(mllm)
    image = synthetic_scene((2246, 1582), (1800, 300, 1900, 400))
    mllm.prefill(image, "red car")  # warm-up
    prefill_s, after_s = [], []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        prefill = mllm.prefill(image, "red car")
        sync(device)
        t1 = time.perf_counter()
        rmap = relevance_from_prefill(prefill, "red car", config)
        rois = propose_for_maps([rmap], config)
        sync(device)
        t2 = time.perf_counter()
        prefill_s.append(t1 - t0)
        after_s.append(t2 - t1)
        del prefill
    visual = int((mllm.processor_inputs([mllm.view(image)], [mllm.build_prompt(1, "x")])["input_ids"] == mllm.image_token_id).sum())
    return {
        "visual_tokens": visual,
        "layers_used": list(config.layers),
        "prefill_s_median": statistics.median(prefill_s),
        "after_prefill_s_median": statistics.median(after_s),
        "after_over_prefill": statistics.median(after_s) / statistics.median(prefill_s),
        "rois": len(rois),
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
    }


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


MEMORY_CHILD = r"""
import json
from focus_engine.testing import synthetic_scene
from focus_engine import FocusConfig, FocusPipeline, load_mllm
from focus_engine.methods.vanilla import Vanilla
from focus_engine.cost import PeakMemory
mllm = load_mllm({folder!r}, device={device!r}, dtype={dtype!r})
image = synthetic_scene((2246, 1582), (1800, 300, 1900, 400))
question, options = "What colour is the square?", ["red", "blue", "green", "white"]
config = FocusConfig(n_steps={n_steps}, answer_max_new_tokens=8, target_max_new_tokens=32)
with PeakMemory(mllm.device) as memory:
    if {mode!r} == "plain":
        Vanilla(mllm, config).run(image, question, options)
        passes = 0
    else:
        passes = FocusPipeline(mllm, config).run(image, question, options=options).cost.forward_passes
print(json.dumps({{"peak": memory.peak, "kind": memory.kind, "forward_passes": passes}}))
"""


def bench_memory(folder: Path, device: str, dtype: str, n_steps: int) -> dict:
    out = {}
    for mode in ("plain", "focus"):
        code = MEMORY_CHILD.format(
            folder=str(folder), device=device, dtype=dtype,
            mode=mode, n_steps=n_steps,
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["focus_over_plain"] = out["focus"]["peak"] / out["plain"]["peak"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024, help="language model width")
    parser.add_argument("--layers", type=int, default=32, help="language model depth")
    parser.add_argument("--vision-hidden", type=int, default=256)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--only", choices=["overhead", "memory"], default=None)
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        build(folder, args)
        report: dict = {"model": {k: getattr(args, k) for k in ("hidden", "layers", "vision_hidden", "vision_layers")},
                        "device": args.device, "dtype": args.dtype}
        if args.only in (None, "overhead"):
            report["overhead"] = bench_overhead(folder, args.device, args.dtype, args.repeats)
        if args.only in (None, "memory"):
            report["memory"] = bench_memory(folder, args.device, args.dtype, args.n_steps)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
