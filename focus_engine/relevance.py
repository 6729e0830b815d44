"""Stage 2: object relevance maps from the value vectors in the KV cache.

For each selected layer, the target's text tokens are compared with every
token by cosine similarity of their value vectors (per-head L2 normalised,
heads concatenated, so a dot product is the head-summed cosine). With the
residual ``M = (S + I) / 2`` row-normalised, the image-token part of each
target token's row is summed over layers, normalised to a distribution, and
the distributions of the target's tokens are multiplied (in log space): a
region must match every word of "red car". No attention weights are needed,
so SDPA / FlashAttention work unchanged.

The arithmetic works on a ``Prefill`` (kv.py) and needs no model. The stage
itself, ``relevance_maps``, asks the adapter for the prefills (several
targets per forward call, or none for targets the answer prompt's prefill
already holds); configs reaching it are resolved (``resolve_config``).
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import FocusConfig
from .errors import check_finite
from .grid import GridGeometry, RelevanceMap
from .kv import Prefill
from .prompts import existence_prompt

_LOG_FLOOR = 1e-30  # keeps log() finite where a token gives a cell no mass


def relevance_maps(
    mllm: Any,
    image: Image.Image,
    targets: Sequence[str],
    config: FocusConfig,
    *,
    prefilled: Mapping[str, Prefill] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_map: Callable[[int, str], None] | None = None,
) -> dict[str, RelevanceMap]:
    """Stage 2: the map of every target over ``image`` (RGB). Targets in
    ``prefilled`` (read from the answer prompt's prefill, ``map_prompt=
    "question"``) cost nothing more; the others get the existence prompt,
    ``config.relevance_batch_size`` of them per forward call. ``should_stop``
    is polled before each call, ``on_map(index, target)`` told after each map."""
    if config.source == "random":
        geometry = mllm.view(image).geometry
        return {target: random_map(geometry, target, config.seed) for target in targets}
    prefilled = dict(prefilled or {})
    keys = config.layers if config.source == "keys" else None
    remaining = [t for t in targets if t not in prefilled]
    maps: dict[str, RelevanceMap] = {}

    def read(batch: Mapping[str, Prefill]) -> None:
        for target, prefill in batch.items():
            maps[target] = mllm.refine_map(relevance_from_prefill(prefill, target, config))
            if on_map is not None:
                on_map(len(maps) - 1, target)

    read({t: prefilled[t] for t in targets if t in prefilled})
    for first in range(0, len(remaining), config.relevance_batch_size):
        if should_stop is not None and should_stop():
            raise InterruptedError("FOCUS relevance maps interrupted")
        chunk = remaining[first : first + config.relevance_batch_size]
        rows = mllm.prefill_prompts(image, [existence_prompt(t) for t in chunk], capture_keys=keys)
        read({target: row[target] for target, row in zip(chunk, rows)})
    return {target: maps[target] for target in targets}


def target_map(mllm: Any, image: Image.Image, target: str, config: FocusConfig) -> RelevanceMap:
    """One target's map from its existence prompt (``relevance_maps`` for one)."""
    return relevance_maps(mllm, image, [target], config)[target]


def random_map(geometry: GridGeometry, target: str, seed: int) -> RelevanceMap:
    """The paper's random-map ablation: uniform noise on the model's grid,
    seeded by ``seed`` and the target's text."""
    rng = np.random.default_rng([seed, zlib.crc32(target.encode("utf-8"))])
    grid = rng.random(geometry.shape).astype(np.float32)
    return RelevanceMap(target=target, grid=normalise_grid(grid), geometry=geometry, source="random", layers=None)


def relevance_from_prefill(prefill: Prefill, target: str, config: FocusConfig) -> RelevanceMap:
    """Everything after the prefill: per-token distributions over
    ``config.layers`` from ``config.source``, their product in log space, the
    grid. Frees the prefill's cache."""
    try:
        kept = content_token_indices(prefill.target_tokens, config)
        probabilities = token_distributions(prefill, config.layers, config.source, kept, config)
    finally:
        prefill.cache = None  # free the KV cache before the next stage
    log_map = np.log(np.maximum(probabilities, _LOG_FLOOR)).sum(axis=0)
    raw = np.exp(log_map - log_map.max())
    raw = (raw / raw.sum()).reshape(prefill.visual_positions.shape)
    return RelevanceMap(
        target=target,
        grid=normalise_grid(raw),
        geometry=prefill.geometry,
        source=config.source,
        layers=config.layers,
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
    visual positions and normalised to sum to 1.

    Each layer's part is brought to the first layer's device before it is
    combined: with a model spread over several GPUs (``device_map="auto"``)
    each layer's cache lives on that layer's device."""
    query_positions = torch.tensor([prefill.target_positions[i] for i in token_indices])
    visual = torch.from_numpy(np.ascontiguousarray(prefill.visual_positions.reshape(-1)))
    total: torch.Tensor | None = None
    rollout: torch.Tensor | None = None
    for layer in prefill.map_layers(layer_range):
        vectors = prefill.layer_vectors(layer, source)  # [heads, seq, head_dim]
        unit = F.normalize(vectors.float(), dim=-1)
        flat = unit.transpose(0, 1).reshape(unit.shape[1], -1)  # [seq, heads*head_dim]
        device = flat.device
        if config.aggregation == "rollout":
            rows = _residual_rows(flat @ flat.T, torch.arange(flat.shape[0], device=device), config)
            rollout = rows if rollout is None else rows.to(rollout.device) @ rollout
            continue
        part = _layer_part(flat, query_positions.to(device), visual.to(device), config)
        total = accumulate(total, part)
    if config.aggregation == "rollout":
        assert rollout is not None
        total = rollout[query_positions.to(rollout.device)][:, visual.to(rollout.device)]
    assert total is not None
    check_finite(total, "relevance map")  # before the normalisation below would hide NaN as a flat map
    total = total.double()
    sums = total.sum(dim=-1, keepdim=True)
    total = torch.where(sums > 0, total / sums.clamp_min(1e-300), torch.full_like(total, 1.0 / total.shape[1]))
    return total.cpu().numpy()


def accumulate(total: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    """``total + part`` on ``total``'s device: a layer's part may sit on
    another GPU than the first layer's (``device_map="auto"``)."""
    return part if total is None else total + part.to(total.device)


def _layer_part(flat: torch.Tensor, queries: torch.Tensor, visual: torch.Tensor, config: FocusConfig) -> torch.Tensor:
    """One layer's ``M[t, visual]`` for the target tokens ``t`` at ``queries``:
    the residual ``(S + I) / 2`` normalised by the target token's row sum
    (``row_normalisation="target"``), or, Fig. 7's pseudocode read literally
    (``X /= X.sum(dim=-1)`` broadcasts over the last axis), by each visual
    token's own row sum (``"visual"``)."""
    if config.row_normalisation == "target":
        return _residual_rows(flat[queries] @ flat.T, queries, config)[:, visual]
    rows = _residual_rows(flat[queries] @ flat.T, queries, config, normalise=False)[:, visual]
    visual_rows = _residual_rows(flat[visual] @ flat.T, visual, config, normalise=False)
    return rows / visual_rows.sum(dim=-1).clamp_min(1e-12)


def _residual_rows(
    similarity: torch.Tensor, positions: torch.Tensor, config: FocusConfig, normalise: bool = True
) -> torch.Tensor:
    """Rows of ``(S + I) / 2`` for the tokens at ``positions``, each summing
    to 1 (unless ``normalise`` is off)."""
    if config.clamp_negative:
        similarity = similarity.clamp_min(0.0)
    rows = similarity.clone()
    rows[torch.arange(len(positions), device=rows.device), positions] += 1.0
    rows = rows * 0.5
    return rows / rows.sum(dim=-1, keepdim=True).clamp_min(1e-12) if normalise else rows


def normalise_grid(grid: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a flat map becomes all zeros)."""
    grid = np.asarray(grid, dtype=np.float64)
    low, high = float(grid.min()), float(grid.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros(grid.shape, dtype=np.float32)
    return ((grid - low) / (high - low)).astype(np.float32)


def _plain(token: str) -> str:
    return token.replace("\u2581", "").replace("\u0120", "").strip().lower()
