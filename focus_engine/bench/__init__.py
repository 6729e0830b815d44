"""Benchmark infrastructure: a procedural fine-grained VQA world and dataset
loaders (V*Bench layout, HRBench TSV, MME-RealWorld-Lite JSON); more to come
(metrics, a runner). Nothing here imports ComfyUI."""

from .datasets import BenchItem, load_dataset
from .world import WorldItem, WorldSpec, crop_around, generate_item, make_synthetic

__all__ = ["BenchItem", "WorldItem", "WorldSpec", "crop_around", "generate_item", "load_dataset", "make_synthetic"]
