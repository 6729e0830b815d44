"""Benchmark infrastructure: a procedural fine-grained VQA world, dataset
loaders (V*Bench layout, HRBench TSV, MME-RealWorld-Lite JSON) and metrics;
a runner is to come. Nothing here imports ComfyUI."""

from .datasets import BenchItem, load_dataset
from .metrics import summarize
from .world import WorldItem, WorldSpec, crop_around, generate_item, make_synthetic

__all__ = [
    "BenchItem", "WorldItem", "WorldSpec", "crop_around", "generate_item", "load_dataset", "make_synthetic",
    "summarize",
]
