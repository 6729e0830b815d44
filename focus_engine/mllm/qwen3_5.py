"""Qwen3.5 (``Qwen3_5ForConditionalGeneration``): FOCUS on a hybrid-attention model.

The vision side is Qwen3-VL's (the subclassed adapter: 16-px patches merged
2x2, one token per 32x32 px, the same processor class and pixel budget), with
no DeepStack. The language model is hybrid: ``text_config.layer_types``
makes three of every four layers ``linear_attention`` (Gated DeltaNet) and
every fourth ``full_attention``. A full-attention layer caches per-token
keys and values as any decoder does; a linear-attention layer's cache holds
a causal-convolution window and one recurrent state per head, no per-token
values, so the paper's map cannot read it there.

How FOCUS reads this model (``Settings.value_layers``):

- ``"all"`` (default): the full-attention layers' cached values, and for each
  linear-attention layer the per-token values captured during the prefill
  with a hook on ``linear_attn.in_proj_qkv`` (its value slice: the linear
  projection of the normalised layer input, the exact counterpart of a
  full-attention layer's ``v_proj``, before the short causal convolution
  that mixes each token with the three before it).
- ``"full_attention"``: only the full-attention layers' cached values (a
  quarter of the layers; no capture, no extra memory).

Measured on planted and real-architecture random models (docs/how_it_works.md):
both localise; ``"all"`` reads four times as many layers and is the
default. Its cost is the captured values of the linear-attention layers,
``value_dim`` numbers per token and layer, held until the map is read.

``source="keys"`` reads pre-RoPE keys of the full-attention layers (after
their ``k_norm``, as the layer uses them) and, with ``"all"``, the key slice
of ``in_proj_qkv`` of the linear ones (before the convolution, like the
values; the kernel's L2 normalisation of keys is a per-head scale that the
map's cosine ignores). The answer
decoded from an answer prefill is decoded afresh (one more prefill): the
linear layers' recurrent state cannot step back the one token the shared
decoding re-runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import FocusConfigError, FocusModelError
from .qwen2_5_vl import QwenSettings
from .qwen3_vl import Qwen3VLAdapter
from .runtime import Decoded, attention_keys, keep_projection

VALUE_LAYERS = ("all", "full_attention")


@dataclass(frozen=True)
class Qwen3_5Settings(QwenSettings):
    value_layers: str = "all"
    """Which layers a map reads: ``all`` (full-attention values from the
    cache, linear-attention values captured in the prefill) or
    ``full_attention`` (the cache's values only)."""

    def check(self) -> None:
        super().check()
        if self.value_layers not in VALUE_LAYERS:
            raise FocusConfigError(f"value_layers={self.value_layers!r}: use one of {', '.join(VALUE_LAYERS)}")


class Qwen3_5Adapter(Qwen3VLAdapter):
    family = "qwen3_5"
    description = "Qwen3.5 (Qwen3_5ForConditionalGeneration, hybrid linear/full attention)"
    min_transformers = (5, 2)  # Qwen3.5's classes arrived in transformers 5.2.0
    Settings = Qwen3_5Settings
    settings: Qwen3_5Settings

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        types = list(getattr(self.text_config, "layer_types", None) or [])
        if len(types) != self.num_layers:
            raise FocusModelError(f"{self.description}: the text config has no layer_types for its {self.num_layers} layers")
        self.linear_layers = frozenset(i for i, kind in enumerate(types) if kind == "linear_attention")
        self.full_layers = tuple(i for i in range(self.num_layers) if i not in self.linear_layers)

    @property
    def recurrent_layers(self) -> frozenset[int]:
        return self.linear_layers

    def _linear_parts(self, index: int) -> tuple[torch.nn.Module, Any]:
        """A linear-attention layer's token mixer and its ``in_proj_qkv``."""
        mixer = self._decoder_layers()[index].linear_attn
        return mixer, mixer.in_proj_qkv

    def hook_layer_values(self, store: dict[int, torch.Tensor]) -> list[Any]:
        if self.settings.value_layers != "all":
            return []
        handles = []
        for index in sorted(self.linear_layers):
            mixer, proj = self._linear_parts(index)
            values = slice(2 * mixer.key_dim, 2 * mixer.key_dim + mixer.value_dim)  # in_proj_qkv is [q | k | v]
            handles.append(keep_projection(proj, store, index, mixer.num_v_heads, values))
        return handles

    def _hook_pre_rope_keys(self, layer_range: tuple[int, int], store: dict[int, torch.Tensor]) -> list[Any]:
        layers = self._decoder_layers()
        kv_heads = int(self.text_config.num_key_value_heads)
        handles = []
        for index in range(*layer_range):
            if index not in self.linear_layers:
                handles.append(attention_keys(layers[index].self_attn, store, index, kv_heads))
            elif self.settings.value_layers == "all":
                mixer, proj = self._linear_parts(index)
                handles.append(keep_projection(proj, store, index, mixer.num_k_heads,
                                               slice(mixer.key_dim, 2 * mixer.key_dim)))
        return handles

    def continue_answer(self, prefill: Any, max_new_tokens: int = 64,
                        should_stop: Callable[[], bool] | None = None) -> Decoded:
        # a linear-attention layer's cache holds the state after the last token only, so the
        # cache cannot drop the last token and run it again: decode from the prompt afresh
        return self._decode(prefill.inputs, None, max_new_tokens, should_stop)
