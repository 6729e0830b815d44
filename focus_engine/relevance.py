"""Stage 2: object relevance maps from the value vectors in the KV cache.

For each selected layer, the target's text tokens are compared with every
token by cosine similarity of their value vectors (per-head L2 normalised,
heads concatenated, so a dot product is the head-summed cosine). With the
residual ``M = (S + I) / 2`` row-normalised, the image-token part of each
target token's row is summed over layers, normalised to a distribution, and
the distributions of the target's tokens are multiplied (in log space): a
region must match every word of "red car". No attention weights are needed,
so SDPA / FlashAttention work unchanged.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import FocusConfig, RELEVANCE_SOURCES
from .errors import FocusConfigError
from .grid import RelevanceMap
from .images import to_pil_rgb
from .mllm.base import Prefill, cache_layer_kv, check_target

_LOG_FLOOR = 1e-30  # keeps log() finite where a token gives a cell no mass


def compute_relevance_map(
    mllm: Any,
    image: Any,
    target: str,
    *,
    layers: tuple[int, int] | None = None,
    source: str | None = None,
    config: FocusConfig | None = None,
) -> RelevanceMap:
    """The relevance map of ``target`` over ``image``: one prefill (none for
    the ``random`` ablation). ``layers`` / ``source`` override the config."""
    config = config or FocusConfig()
    mllm.apply_config(config)
    target = check_target(target)
    source = source or config.source
    if source not in RELEVANCE_SOURCES:
        raise FocusConfigError(f"source {source!r} is not one of {', '.join(RELEVANCE_SOURCES)}")
    layer_range = mllm.resolve_layers(layers if layers is not None else config.layers, config.layer_fraction)

    if source == "random":
        geometry = mllm.view(to_pil_rgb(image)).geometry
        seed = [config.seed, zlib.crc32(target.encode("utf-8"))]
        grid = np.random.default_rng(seed).random(geometry.shape).astype(np.float32)
        return RelevanceMap(target=target, grid=normalise_grid(grid), geometry=geometry, source=source, layers=None)

    prefill = mllm.prefill(image, target, capture_keys=layer_range if source == "keys" else None)
    return mllm.refine_map(relevance_from_prefill(prefill, target, layer_range, source, config), config)


def relevance_from_prefill(
    prefill: Prefill, target: str, layer_range: tuple[int, int], source: str, config: FocusConfig
) -> RelevanceMap:
    """Everything after the prefill: per-token distributions, their product in
    log space, the grid. Frees the prefill's cache."""
    try:
        kept = content_token_indices(prefill.target_tokens, config)
        probabilities = token_distributions(prefill, layer_range, source, kept, config)
    finally:
        prefill.cache = None  # free the KV cache before the next stage
    log_map = np.log(np.maximum(probabilities, _LOG_FLOOR)).sum(axis=0)
    raw = np.exp(log_map - log_map.max())
    raw = (raw / raw.sum()).reshape(prefill.visual_positions.shape)
    return RelevanceMap(
        target=target,
        grid=normalise_grid(raw),
        geometry=prefill.geometry,
        source=source,
        layers=layer_range,
        tokens=tuple(prefill.target_tokens[i] for i in kept),
        raw=raw.astype(np.float32),
    )


def content_token_indices(tokens: list[str], config: FocusConfig) -> list[int]:
    """Indices of the target tokens that enter the product: stop words such as
    "a", "the", "with" are left out [ours], unless nothing else remains."""
    if not config.skip_stop_words:
        return list(range(len(tokens)))
    stop = {w.lower() for w in config.stop_words}
    kept = [i for i, tok in enumerate(tokens) if _plain(tok) not in stop and _plain(tok)]
    return kept or list(range(len(tokens)))


def token_distributions(
    prefill: Prefill,
    layer_range: tuple[int, int],
    source: str,
    token_indices: list[int],
    config: FocusConfig,
) -> np.ndarray:
    """``[n_tokens, n_cells]``: for each kept target token, its residual
    similarity rows summed (or rolled out) over the layers, restricted to the
    visual positions and normalised to sum to 1."""
    query_positions = torch.tensor([prefill.target_positions[i] for i in token_indices])
    visual = torch.from_numpy(np.ascontiguousarray(prefill.visual_positions.reshape(-1)))
    total: torch.Tensor | None = None
    rollout: torch.Tensor | None = None
    for layer in range(*layer_range):
        vectors = _layer_vectors(prefill, layer, source)  # [heads, seq, head_dim]
        unit = F.normalize(vectors.float(), dim=-1)
        flat = unit.transpose(0, 1).reshape(unit.shape[1], -1)  # [seq, heads*head_dim]
        device = flat.device
        if config.aggregation == "rollout":
            rows = _residual_rows(flat @ flat.T, torch.arange(flat.shape[0], device=device), config)
            rollout = rows if rollout is None else rows @ rollout
            continue
        rows = _residual_rows(flat[query_positions.to(device)] @ flat.T, query_positions.to(device), config)
        part = rows[:, visual.to(device)]
        total = part if total is None else total + part
    if config.aggregation == "rollout":
        assert rollout is not None
        total = rollout[query_positions.to(rollout.device)][:, visual.to(rollout.device)]
    assert total is not None
    total = total.double()
    sums = total.sum(dim=-1, keepdim=True)
    total = torch.where(sums > 0, total / sums.clamp_min(1e-300), torch.full_like(total, 1.0 / total.shape[1]))
    return total.cpu().numpy()


def _residual_rows(similarity: torch.Tensor, positions: torch.Tensor, config: FocusConfig) -> torch.Tensor:
    """Rows of ``(S + I) / 2`` for the tokens at ``positions``, each summing to 1."""
    if config.clamp_negative:
        similarity = similarity.clamp_min(0.0)
    rows = similarity.clone()
    rows[torch.arange(len(positions), device=rows.device), positions] += 1.0
    rows = rows * 0.5
    return rows / rows.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def _layer_vectors(prefill: Prefill, layer: int, source: str) -> torch.Tensor:
    if source == "values":
        _, values = cache_layer_kv(prefill.cache, layer)
        return values[0]
    keys = (prefill.pre_rope_keys or {}).get(layer)
    if keys is None:
        raise FocusConfigError(f"no pre-RoPE keys were captured for layer {layer}")
    return keys


def normalise_grid(grid: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a flat map becomes all zeros)."""
    grid = np.asarray(grid, dtype=np.float64)
    low, high = float(grid.min()), float(grid.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros(grid.shape, dtype=np.float32)
    return ((grid - low) / (high - low)).astype(np.float32)


def _plain(token: str) -> str:
    return token.replace("\u2581", "").replace("\u0120", "").strip().lower()
