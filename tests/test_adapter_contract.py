"""What every model family's adapter must do, checked once per family on
planted models loaded from their saved folders: the map of a colour peaks on
the object of that colour for wide, tall and square images with the object
at every edge; a pipeline ROI covers it; the values read from the KV cache
are the layers' v_proj outputs; a batched yes/no equals one by one; a map
does not depend on what ran before it; the families whose processor needs
torchvision load with an image-only processor when it cannot be built; a
batched prefill's rows map like their prompts alone; the plain answer
decoded from its own prefill is a fresh generation; and prompt-lookup
decoding gives the greedy reply. The families are the
table in families.py, one entry each (fixtures, builder, traits).
Family-specific geometry is tested in test_llava*.py / test_qwen2_5_vl.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families import FAMILY
from helpers import PLACES, SIZES, covers_centre, object_box, peak_pixel, scene
from focus_engine import FocusConfig, FocusPipeline, RelevanceMap, load_mllm, resolve_config
from focus_engine.mllm import FAMILY_ADAPTERS
from focus_engine.prompts import EXISTENCE_PROMPT, existence_prompt, format_question, question_prompt
from focus_engine.relevance import relevance_from_prefill
from focus_engine.targets import build_icl_prompt


@pytest.fixture
def mllm(request, family):
    return request.getfixturevalue(FAMILY[family].planted)


def test_every_registered_family_is_tested():
    """A family joins the tests by its entry in families.py (a registry line
    may map a second model_type to a family's adapter: Qwen3-VL's MoE)."""
    assert sorted(FAMILY) == sorted({adapter.family for adapter in FAMILY_ADAPTERS.values()})


def test_the_planted_model_loads_as_its_family(mllm, family):
    assert mllm.family == family and isinstance(mllm, FAMILY_ADAPTERS[family])


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("place", PLACES)
def test_map_peaks_on_the_object(mllm, family, shape, place):
    size = SIZES[shape]
    box = object_box(size, place, FAMILY[family].object_side(size))
    rmap = mllm.relevance_map(scene(size, box, seed=len(place)), "red")
    assert isinstance(rmap, RelevanceMap) and rmap.image_size == size
    assert rmap.grid.dtype == np.float32 and rmap.grid.min() >= 0.0 and rmap.grid.max() == pytest.approx(1.0)
    x, y = peak_pixel(rmap)
    assert box[0] <= x < box[2] and box[1] <= y < box[3], ((x, y), box)
    nearest = rmap.to_image(interpolation="nearest")
    assert nearest.shape == (size[1], size[0]) and nearest[box[1]:box[3], box[0]:box[2]].max() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", list(SIZES))
def test_pipeline_roi_covers_the_object(mllm, family, shape):
    size = SIZES[shape]
    box = object_box(size, "bottom-right", FAMILY[family].object_side(size))
    result = FocusPipeline(mllm, FocusConfig(n_steps=2, verify_stop=None)).run(scene(size, box, seed=5), "Where?",
                                                                                     targets=["red"])
    assert result.family == family and result.targets == ["red"] and result.target_source == "given"
    assert any(covers_centre(r.box, box) for r in result.rois[:3])
    assert result.cost.forward_passes >= 1 + 2  # one prefill, at least two verified crops


def layer_inputs(mllm, inputs) -> dict[int, torch.Tensor]:
    """Each decoder layer's input ``[seq, hidden]`` as the layer receives it
    (read with hooks: ``output_hidden_states`` records layer outputs, which
    on Qwen3-VL miss the DeepStack features added after layers 0..2)."""
    seen: dict[int, torch.Tensor] = {}

    def keep(index):
        def hook(module, args, kwargs):
            seen[index] = (args[0] if args else kwargs["hidden_states"])[0]
        return hook

    handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True)
               for i, layer in enumerate(mllm._decoder_layers())]
    try:
        with torch.inference_mode():
            mllm.model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def layer_values(layer, normed: torch.Tensor) -> torch.Tensor:
    """``[heads, seq, head_dim]``: v_proj of an attention layer's normalised
    input, or the value slice of a linear-attention layer's in_proj_qkv."""
    attn = getattr(layer, "self_attn", None)
    if attn is not None:
        out = attn.v_proj(normed).reshape(normed.shape[0], -1, attn.head_dim)
    else:
        mixer = layer.linear_attn
        start = 2 * mixer.key_dim
        out = mixer.in_proj_qkv(normed)[:, start:start + mixer.value_dim].reshape(normed.shape[0], -1, mixer.head_v_dim)
    return out.transpose(0, 1)


def test_values_equal_v_proj_of_the_layer_input(request, family):
    """The values a map reads are v_proj(input_layernorm(h)) of each layer's
    input h as the layer receives it (DeepStack additions included), on a
    model whose layers all work at full strength; a hybrid model's
    linear-attention layers give the value slice of in_proj_qkv."""
    mllm = load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))
    image = scene((800, 600), (100, 100, 200, 200))
    prefill = mllm.prefill(image, "red car")
    text = mllm.build_prompt(1, EXISTENCE_PROMPT.format(target="red car"))
    inputs = mllm._model_inputs(mllm.processor_inputs([mllm.view(image)], [text]))
    seen = layer_inputs(mllm, inputs)
    layers = mllm._decoder_layers()
    assert len(layers) == mllm.num_layers == len(seen)
    for index, layer in enumerate(layers):
        with torch.inference_mode():
            expected = layer_values(layer, layer.input_layernorm(seen[index]))
        torch.testing.assert_close(prefill.layer_vectors(index, "values"), expected, rtol=1e-4, atol=1e-5)


def test_keys_are_the_keys_the_layer_rotates(request, family):
    """The keys ablation reads each attention layer's keys as the layer uses
    them before RoPE: after its per-head ``k_norm`` where it has one (Qwen3-VL,
    Qwen3.5; its learned scales made random here, so that the norm changes
    the keys' directions). RoPE only rotates, so every key keeps its length
    in the cache: the captured keys have the cached keys' lengths."""
    from focus_engine.kv import cache_layer_kv

    mllm = load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))
    torch.manual_seed(0)
    normed = 0
    for layer in mllm._decoder_layers():
        norm = getattr(getattr(layer, "self_attn", None), "k_norm", None)
        if norm is not None:
            with torch.no_grad():
                norm.weight.copy_(torch.rand_like(norm.weight) * 2 + 0.1)
            normed += 1
    assert normed == (len(mllm._decoder_layers()) - len(mllm.recurrent_layers) if FAMILY[family].k_norm else 0)
    image = scene((800, 600), (100, 100, 200, 200))
    prefill = mllm.prefill(image, "red car", capture_keys=(0, mllm.num_layers))
    for index in range(mllm.num_layers):
        if index in mllm.recurrent_layers:
            continue
        keys = prefill.layer_vectors(index, "keys")
        cached, _ = cache_layer_kv(prefill.cache, index)
        torch.testing.assert_close(keys.norm(dim=-1), cached[0].norm(dim=-1), rtol=1e-4, atol=1e-5)


def test_batched_yes_no_equals_one_by_one(mllm):
    crops = [scene((300, 200), (10, 10, 80, 80)), scene((500, 500), (200, 200, 300, 300)),
             scene((120, 400), (0, 0, 60, 60))]
    targets = ["red", "blue", "red square"]
    batched = mllm.yes_no_confidence(crops, targets, batch_size=3)
    single = np.array([mllm.yes_no_confidence([c], [t])[0] for c, t in zip(crops, targets)])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert ((batched >= 0) & (batched <= 1)).all()


def test_a_map_does_not_depend_on_the_call_before_it(mllm):
    """Models may keep state between calls (Qwen2.5-VL's rope_deltas, which
    its adapter resets before every call): an image's map must come out the
    same after another image of another size was mapped."""
    small = scene((600, 400), (500, 300, 580, 380))
    big = scene((1800, 1200), (100, 100, 260, 260))
    first = mllm.relevance_map(small, "red").grid
    mllm.relevance_map(big, "red")
    np.testing.assert_allclose(first, mllm.relevance_map(small, "red").grid, atol=1e-6)


@pytest.mark.parametrize("needs_image_only", [
    pytest.param(f.name, marks=pytest.mark.skipif(bool(f.skip_reason), reason=f.skip_reason or ""))
    for f in FAMILY.values() if f.image_only_processor
])
def test_loads_with_an_image_only_processor_when_the_full_one_cannot_be_built(request, monkeypatch,
                                                                               needs_image_only):
    """Their full processors include a video processor, which needs
    torchvision: where it cannot be built the adapter assembles an image-only
    processor from the folder's parts, and maps as before. (Simulated here, so
    the test means the same with or without torchvision installed.)"""
    from transformers import AutoProcessor

    folder = request.getfixturevalue(f"{FAMILY[needs_image_only].planted}_dir")

    def no_video_processor(*args, **kwargs):
        raise ImportError("the video processor needs torchvision, which is not installed")

    monkeypatch.setattr(AutoProcessor, "from_pretrained", no_video_processor)
    mllm = load_mllm(str(folder))
    assert mllm.family == needs_image_only and type(mllm.processor).__name__.endswith("ImageProcessorOnly")
    image = scene((1200, 600), (1000, 50, 1150, 200))
    x, y = peak_pixel(mllm.relevance_map(image, "red"))
    assert 1000 <= x < 1150 and 50 <= y < 200


def test_a_batched_prefill_row_maps_as_its_prompt_alone(request, family):
    """Existence prompts of several targets share one forward call (left
    padded); each row's map equals the map of its prompt alone."""
    mllm = load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))
    image = scene((900, 600), (700, 400, 800, 500))
    config = resolve_config(mllm)
    rows = mllm.prefill_prompts(image, [existence_prompt("red"), existence_prompt("blue square with a star")])
    assert mllm.counter.forward_passes == 2
    batched = relevance_from_prefill(rows[0]["red"], "red", config)  # the shorter row: padded on the left
    alone = relevance_from_prefill(mllm.prefill(image, "red"), "red", config)
    np.testing.assert_allclose(batched.grid, alone.grid, atol=1e-4)
    longer = relevance_from_prefill(rows[1]["blue square with a star"], "blue square with a star", config)
    # byte-level BPE tokenizers (Qwen3.5's) mark a leading space with "Ġ"
    assert tuple(token.lstrip("\u0120\u2581") for token in longer.tokens) == ("blue", "square", "star")


def test_the_answer_decoded_from_its_prefill_is_a_fresh_generation(request, family):
    """One prefill serves the plain answer and the maps: decoding from its
    cache gives the tokens, with the probabilities, of a generation from
    scratch, and a map read from it after decoding is the map read before."""
    mllm = load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))
    image = scene((900, 600), (700, 400, 800, 500))
    text = format_question("What colour is the red square?", ["red", "blue"])
    views = [mllm.view(image)]
    fresh = mllm._decode(mllm.processor_inputs(views, [mllm.build_prompt(1, text)]), None, 5, None)
    prompt = question_prompt("What colour is the red square?", ["red", "blue"], ["red square"])
    prefill = mllm.prefill_answer(image, text)
    config = resolve_config(mllm)
    before = relevance_from_prefill(mllm.answer_target_prefills(prefill, prompt)["red square"], "red square", config)
    decoded = mllm.continue_answer(prefill, max_new_tokens=5)
    assert decoded.text == fresh.text and len(decoded.token_probabilities) == len(fresh.token_probabilities) > 0
    np.testing.assert_allclose(decoded.token_probabilities, fresh.token_probabilities, rtol=1e-4, atol=1e-6)
    first = torch.softmax(prefill.last_logits, dim=-1).max()
    assert float(first) == pytest.approx(decoded.token_probabilities[0], rel=1e-4)
    after = relevance_from_prefill(mllm.answer_target_prefills(prefill, prompt)["red square"], "red square", config)
    np.testing.assert_allclose(after.grid, before.grid, atol=1e-4)


def test_prompt_lookup_decoding_gives_the_greedy_reply(request, family):
    """Target extraction decodes with prompt lookup (tokens copied from the
    prompt, checked in one call): the same reply and probabilities as one
    call per token, also right after an image prompt (Qwen keeps position
    state between calls)."""
    mllm = load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))
    prompt = build_icl_prompt("What colour is the red square next to the blue circle?")
    inputs = mllm.processor_inputs([], [mllm.build_prompt(0, prompt)])
    plain = mllm._decode(inputs, None, 24, None)
    mllm.yes_no_confidence([scene((900, 600), (700, 400, 800, 500))], ["red square"])
    looked_up = mllm._decode(inputs, None, 24, None, lookup_tokens=10)
    assert looked_up.text == plain.text and len(plain.token_probabilities) > 0
    np.testing.assert_allclose(looked_up.token_probabilities, plain.token_probabilities, rtol=1e-3, atol=1e-5)
    assert mllm.generate(prompt, max_new_tokens=24, lookup_tokens=10) == plain.text
