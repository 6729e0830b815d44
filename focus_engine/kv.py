"""What a relevance prefill leaves behind, and how to read it.

``Prefill`` is one forward pass over an existence prompt: the KV cache, the
sequence position of every visual grid cell, and where the target's words
are. The cache is read as ``cache.layers[i].keys / .values`` (transformers >=
4.56), shape ``[batch, kv_heads, seq, head_dim]``; values are the raw
``v_proj`` output (no RoPE). Nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import FocusConfigError, FocusModelError
from .grid import GridGeometry


@dataclass
class Prefill:
    """One forward pass over an existence prompt, with what relevance needs."""

    cache: Any
    input_ids: torch.Tensor  # [seq], on CPU
    visual_positions: np.ndarray  # [h, w] sequence index of each grid cell
    geometry: GridGeometry
    target_positions: list[int]
    target_tokens: list[str]
    pre_rope_keys: dict[int, torch.Tensor] | None = None  # layer -> [batch, kv_heads, seq, head_dim]
    layer_values: dict[int, torch.Tensor] | None = None
    """Per-token values captured during the prefill for layers whose cache
    keeps none (Qwen3.5's linear-attention layers), read in place of the cache."""
    unmapped_layers: frozenset[int] = frozenset()
    """Layers with no per-token vectors to read (left out of a map)."""
    row: int = 0
    """This prompt's row of a batched prefill ..."""
    start: int = 0
    """... and its first real position there (the rows are left padded);
    ``input_ids`` and every position above count from it."""

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[0])

    def layer_vectors(self, layer: int, source: str) -> torch.Tensor:
        """``[kv_heads, seq, head_dim]`` of one layer for this prompt: the
        cached values, or the pre-RoPE keys captured during the prefill (the
        keys ablation)."""
        if source == "values":
            if self.layer_values is not None and layer in self.layer_values:
                values = self.layer_values[layer]
            else:
                _, values = cache_layer_kv(self.cache, layer)
            return values[self.row, :, self.start : self.start + self.seq_len]
        keys = (self.pre_rope_keys or {}).get(layer)
        if keys is None:
            raise FocusConfigError(f"no pre-RoPE keys were captured for layer {layer}")
        return keys[self.row, :, self.start : self.start + self.seq_len]

    def map_layers(self, layer_range: tuple[int, int]) -> list[int]:
        """The layers of ``layer_range`` (half-open) that have per-token
        vectors to read: all of them, except on hybrid models the layers
        whose cache keeps a recurrent state and whose values were not captured."""
        layers = [layer for layer in range(*layer_range) if layer not in self.unmapped_layers]
        if not layers:
            raise FocusConfigError(
                f"layers {layer_range[0]}..{layer_range[1] - 1} hold no per-token value vectors on this model "
                f"(its cache keeps a recurrent state there); choose a range that includes a full-attention layer"
            )
        return layers


@dataclass
class PromptRow:
    """One prompt of a batched prefill, as far as locating words in it goes:
    its tokens (padding dropped), the chat text they came from, where the
    user's text sits in it, the tokenizer's character offsets, the visual
    cells' positions."""

    cache: Any
    index: int
    pad: int
    ids: torch.Tensor
    chat: str
    user_text: str
    user_text_at: int
    offsets: list[list[int]] | None
    geometry: GridGeometry
    visual_positions: np.ndarray
    pre_rope_keys: dict[int, torch.Tensor] | None = None
    layer_values: dict[int, torch.Tensor] | None = None
    unmapped_layers: frozenset[int] = frozenset()


@dataclass
class AnswerPrefill:
    """The prefill of the plain answer prompt: its cache and inputs (to
    decode the answer from), the next-token logits, and its prompt row (to
    read the maps of the targets the question names from the same cache)."""

    cache: Any
    inputs: Any
    last_logits: torch.Tensor  # [vocab], float, on CPU
    row: PromptRow


def _cache_names() -> tuple[str, str]:
    """transformers 5 calls the cache ``cache`` in outputs and arguments
    (``past_key_values`` is deprecated there); 4.x only knows ``past_key_values``."""
    try:
        from transformers.modeling_outputs import CausalLMOutputWithPast
    except ImportError:  # pragma: no cover - transformers always has it
        return "past_key_values", "past_key_values"
    name = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
    return name, name


CACHE_OUTPUT, CACHE_KWARG = _cache_names()


def output_cache(output: Any) -> Any:
    """The KV cache of a model output, under the installed version's name."""
    return getattr(output, CACHE_OUTPUT)


def cache_layer_kv(cache: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer, ``[batch, kv_heads, seq, head_dim]``."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        layer = layers[index]
        return layer.keys, layer.values
    raise FocusModelError(
        f"unsupported KV cache {type(cache).__name__}: FOCUS reads cache.layers[i].values "
        "(transformers >= 4.56); upgrade transformers"
    )


def check_full_cache(cache: Any, seq_len: int, num_layers: int, skip: frozenset[int] = frozenset()) -> None:
    """Refuse caches that dropped positions (sliding windows, truncation):
    the relevance map needs the value of every token. Layers in ``skip``
    keep a recurrent state instead of per-token values (hybrid models) and
    are not checked."""
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) < num_layers:
        count = "no" if layers is None else len(layers)
        raise FocusModelError(
            f"the KV cache ({type(cache).__name__}) has {count} layers for a {num_layers}-layer model; "
            "FOCUS needs a full per-layer cache (transformers >= 4.56 DynamicCache)"
        )
    for index in range(num_layers):
        if index in skip:
            continue
        _, values = cache_layer_kv(cache, index)
        if values is None or values.shape[-2] != seq_len:
            kept = None if values is None else values.shape[-2]
            raise FocusModelError(
                f"layer {index} of the KV cache keeps {kept} of {seq_len} positions (a sliding-window or "
                "truncated cache); FOCUS needs every position: disable sliding-window attention or use a "
                "shorter prompt / smaller image"
            )
