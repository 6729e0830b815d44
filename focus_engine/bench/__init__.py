"""Benchmark infrastructure: a procedural fine-grained VQA world, dataset
loaders (V*Bench layout, HRBench TSV, MME-RealWorld-Lite JSON), metrics, and
a runner comparing FOCUS with the vanilla baseline and the paper's ablations.

Nothing here imports ComfyUI; the model-facing parts run the methods of
``focus_engine.methods``.
"""

from .datasets import BenchItem, load_dataset
from .metrics import summarize
from .report import BenchmarkResult
from .runner import run_benchmark
from .world import WorldItem, WorldSpec, crop_around, generate_item, make_synthetic

__all__ = [
    "BenchItem", "BenchmarkResult", "WorldItem", "WorldSpec", "crop_around", "generate_item", "load_dataset",
    "make_synthetic", "run_benchmark", "summarize",
]
