"""Benchmark infrastructure: a procedural fine-grained VQA world (more to come:
dataset loaders, metrics, a runner). Nothing here imports ComfyUI."""

from .world import WorldItem, WorldSpec, crop_around, generate_item, make_synthetic

__all__ = ["WorldItem", "WorldSpec", "crop_around", "generate_item", "make_synthetic"]
