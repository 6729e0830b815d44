"""Tiny models and scenes built locally, for tests, benchmarks and the
demo model's trainer (nothing is downloaded).

- ``word_tokenizer``: a word-level fast tokenizer over a given vocabulary;
- ``tiny_llava``: a real ``LlavaForConditionalGeneration`` and its processor
  at any small size (the trainer's starting point, the planted models' base);
- ``build_planted_*``: one per family, saved with ``save_pretrained`` so that
  tests load them with ``load_mllm(folder)``, the path a user's 7B model
  takes. Their colour words equal the projected features of image patches of
  that colour and the language layers' output projections are damped, so
  value vectors localise colours by construction, while everything they say
  is meaningless; built in seconds, deterministic;
- ``synthetic_scene``: a grey scene with one coloured square or star.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .bench.world import COLOURS

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
QWEN_SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>")

_WORDS = (
    "user assistant is there a an the in on of to and or with image picture answer yes no question "
    "which what where how many objects object do you need look at information about following so "
    "i it this that color colour left right top bottom side small big shape letter number "
    "square circle star triangle car sign cup box ball cat dog bag tree house person sky "
    "all one two three four five six seven eight nine zero find"
).split()
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}</s>{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
PLANTED_MODEL_VERSION = "planted-llava-v1"
"""Version mark of the planted models (``focus_demo.json``)."""


def word_tokenizer(
    words: Sequence[str],
    *,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    lowercase: bool = True,
    newline_token: bool = False,
    image_token: str | None = "<image>",
) -> Any:
    """A word-level fast tokenizer: the special tokens first, then ``words``
    (duplicates and special tokens dropped), split on whitespace and
    punctuation; ``lowercase`` folds case, ``newline_token`` keeps "\\n" as a
    token of its own."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = list(special_tokens)
    vocab = {tok: i for i, tok in enumerate([*special, *dict.fromkeys(w for w in words if w not in special)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    split = pre_tokenizers.Whitespace()
    if newline_token:
        split = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"), split])
    backend.pre_tokenizer = split
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special])
    extra = {"image_token": image_token} if image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens=extra,
    )


def build_tokenizer(extra_words: Sequence[str] = (), family: str = "llava") -> Any:
    """The planted models' tokenizer (lower-cased words of the test prompts),
    with the special tokens of ``family`` (``llava``, or a Qwen family: ``qwen*``)."""
    special = list(SPECIAL_TOKENS) + (list(QWEN_SPECIAL_TOKENS) if family.startswith("qwen") else [])
    words = [*COLOURS, *_WORDS, *extra_words, *".,:;?!'()-\n"]
    return word_tokenizer(words, special_tokens=special, image_token="<image>" if family == "llava" else None)


QWEN_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""The split Qwen's byte-level BPE tokenizers make before merging."""


def byte_level_tokenizer(extra_words: Sequence[str] = ()) -> Any:
    """A byte-level BPE tokenizer in Qwen's style (its split, NFC, byte-level
    alphabet) whose merges make each word of the test prompts, with and
    without a leading space and capitalised, one token ("red", "Ġred"), and
    with the Qwen special tokens. For families whose folders transformers
    always reads with their own BPE tokenizer class (Qwen3.5: ``Qwen3_5Tokenizer``
    rebuilds the tokenizer from the saved vocabulary and merges), where a
    word-level tokenizer would not survive the round trip."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = [*COLOURS, *_WORDS, *extra_words]
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000, special_tokens=[*SPECIAL_TOKENS, *QWEN_SPECIAL_TOKENS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [form for w in words for form in (w, " " + w, w.capitalize(), " " + w.capitalize())]
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def tiny_llava(
    tokenizer: Any,
    *,
    image_side: int,
    patch: int,
    vision_hidden: int,
    vision_layers: int,
    vision_heads: int,
    text_hidden: int,
    text_layers: int,
    heads: int,
    kv_heads: int,
    intermediate_ratio: float,
    max_positions: int,
    feature_layer: int,
) -> tuple[Any, Any]:
    """A randomly initialised ``LlavaForConditionalGeneration`` (CLIP vision
    tower, Llama language model) and its ``LlavaProcessor`` (square
    ``image_side`` input, ``patch`` px patches, the chat template below)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    try:  # transformers 5: the PIL backend by name (no torchvision needed, no warning)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:  # transformers 4.x: the PIL-based processor has the plain name
        from transformers import CLIPImageProcessor

    vision = CLIPVisionConfig(
        hidden_size=vision_hidden, intermediate_size=4 * vision_hidden, num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads, image_size=image_side, patch_size=patch,
    )
    text = LlamaConfig(
        hidden_size=text_hidden, intermediate_size=int(intermediate_ratio * text_hidden), num_hidden_layers=text_layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=feature_layer, vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_side}, crop_size={"height": image_side, "width": image_side}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
        vision_feature_select_strategy="default", image_token="<image>", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def build_planted_llava(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 128,
    text_layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    image_side: int = 336,
    patch: int = 14,
    colours: dict[str, tuple[int, int, int]] | None = None,
    damping: float = 0.0,
    neutral_words: bool = True,
) -> Path:
    """Build a planted-signal LLaVA and save it (model + processor) to ``folder``.

    Colour words get the embedding of a patch of their colour; the vision
    encoder layers and the language layers' output projections (o_proj,
    down_proj) are scaled by ``damping`` (0 = removed), so hidden states stay
    close to the input embeddings and value vectors compare colours. With
    ``neutral_words`` every other word embeds to zero ("red star" = "red").
    """
    import torch

    colours = colours or COLOURS
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model, processor = tiny_llava(
        tokenizer, image_side=image_side, patch=patch, vision_hidden=vision_hidden, vision_layers=vision_layers,
        vision_heads=max(2, vision_hidden // 64), text_hidden=text_hidden, text_layers=text_layers, heads=heads,
        kv_heads=kv_heads, intermediate_ratio=2.6875, max_positions=4096, feature_layer=-2,
    )
    model.train(False)
    with torch.no_grad():
        _damp(model, damping)
        features = {
            word: _patch_feature(model, processor.image_processor, rgb, image_side) for word, rgb in colours.items()
        }
        _plant_words(model, tokenizer, features, SPECIAL_TOKENS, neutral_words)
    folder = _save(folder, model, processor)
    (folder / "focus_demo.json").write_text(
        json.dumps(
            {"version": PLANTED_MODEL_VERSION, "seed": seed, "colours": colours, "damping": damping,
             "neutral_words": neutral_words},
            indent=1,
        )
    )
    return folder


def _save(folder: str | os.PathLike, model: Any, processor: Any) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    portable_tokenizer_config(folder)
    return folder


def portable_llava_weights(folder: str | os.PathLike) -> None:
    """Make a LLaVA saved by transformers 5 loadable by 4.x as well: 5 writes
    the CLIP vision tower's weights as ``vision_tower.<name>``, where 4.x
    looks for ``vision_tower.vision_model.<name>`` (and would leave the tower
    random); 5 reads both. Same tensors, other names."""
    from safetensors.torch import load_file, save_file

    for path in Path(folder).glob("*.safetensors"):
        weights = load_file(path)
        renamed = {
            ("vision_tower.vision_model." + key[len("vision_tower."):]
             if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model.") else key): value
            for key, value in weights.items()
        }
        if list(renamed) != list(weights):
            save_file(renamed, path, metadata={"format": "pt"})


def portable_tokenizer_config(folder: str | os.PathLike) -> None:
    """Make a saved fast tokenizer loadable by every supported transformers:
    transformers 5 names its class ``TokenizersBackend`` and writes
    ``extra_special_tokens`` as a list, which 4.x cannot read; both mean the
    same as 4.x's ``PreTrainedTokenizerFast`` with no extra special tokens."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if config.get("extra_special_tokens") == []:
        del config["extra_special_tokens"]
    path.write_text(json.dumps(config, indent=2) + "\n")


def _plant_words(
    model: Any, tokenizer: Any, features: dict[str, Any], special_tokens: Sequence[str], neutral_words: bool
) -> None:
    """Give each colour word the image feature of its colour. With
    ``neutral_words`` every other (non-special) word embeds to zero, hence zero
    value vectors: such words match no image token and leave the map to the
    colours."""
    embed = model.get_input_embeddings()
    if neutral_words:
        special = {tokenizer.convert_tokens_to_ids(t) for t in special_tokens}
        for token_id in range(embed.weight.shape[0]):
            if token_id not in special:
                embed.weight[token_id] = 0.0
    for word, feature in features.items():
        embed.weight[tokenizer.convert_tokens_to_ids(word)] = feature


def _damp(model: Any, damping: float) -> None:
    """Scale the residual-branch outputs of vision and language layers."""
    tower = model.model.vision_tower
    tower = getattr(tower, "vision_model", tower)  # transformers 4.x nests it, 5.x does not
    for layer in tower.encoder.layers:  # CLIP and SigLIP name these alike
        for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
            linear.weight.mul_(damping)
            linear.bias.mul_(damping)
    # position embeddings would otherwise make one colour differ from patch to patch
    tower.embeddings.position_embedding.weight.mul_(0.01)
    # every pixel of a patch gets the same weights, so a patch's embedding is a
    # linear function of its mean colour (a part-red patch is red-ish, wherever
    # in the patch the red pixels are)
    conv = tower.embeddings.patch_embedding.weight  # [hidden, 3, patch, patch]
    conv.copy_(conv.mean(dim=(2, 3), keepdim=True).expand_as(conv).clone())
    _damp_language(model, damping)


def _damp_language(model: Any, damping: float) -> None:
    import torch

    for layer in model.model.language_model.layers:
        mixer = getattr(layer, "self_attn", None)  # a hybrid model's linear-attention layers have linear_attn
        (mixer.o_proj if mixer is not None else layer.linear_attn.out_proj).weight.mul_(damping)
        down = getattr(layer.mlp, "experts", layer.mlp).down_proj
        # a mixture of experts keeps its experts' down projections as one [experts, out, in] parameter
        (down if isinstance(down, torch.nn.Parameter) else down.weight).mul_(damping)


def _image_features(model: Any, **inputs: Any) -> Any:
    """The projected image features (per image or crop): transformers 5 wraps
    them in an output's ``pooler_output``, 4.x returns them as they are."""
    features = model.model.get_image_features(**inputs)
    return features.pooler_output if hasattr(features, "pooler_output") else features


def _patch_feature(model: Any, image_processor: Any, rgb: tuple[int, int, int], side: int) -> Any:
    """The projected image feature of a patch of colour ``rgb`` (mean over a
    solid image, which removes what little position signal is left)."""
    import torch

    pixels = image_processor(images=Image.new("RGB", (side, side), rgb), return_tensors="pt")["pixel_values"]
    features = _image_features(model, pixel_values=pixels.to(model.dtype))
    return torch.cat(list(features), dim=0).mean(dim=0)


def build_planted_qwen2_5_vl(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    vision_hidden: int = 64,
    text_hidden: int = 128,
    text_layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    max_pixels: int = 28 * 28 * 400,
    colours: dict[str, tuple[int, int, int]] | None = None,
    damping: float = 0.0,
) -> Path:
    """A planted-signal Qwen2.5-VL, saved with an image-only processor (built
    without torchvision). Planting as in ``build_planted_llava``: vision
    blocks and language output projections scaled by ``damping``, patch
    embeddings a function of the patch's mean colour, colour words embedded
    as the merged feature of a patch of that colour, other words as zero."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as ImageProcessor,
        )
    except ImportError:  # transformers 4.x
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    from .mllm.qwen2_5_vl import image_only_processor_class

    colours = colours or COLOURS
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(family="qwen2_5_vl")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = text_hidden // heads
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=2,
            out_hidden_size=text_hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, fullatt_block_indexes=[1],
        ),
        text_config=dict(
            hidden_size=text_hidden, intermediate_size=int(2.6875 * text_hidden), num_hidden_layers=text_layers,
            num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
            max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
            rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]},
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2_5_VLForConditionalGeneration(config).train(False)
    image_processor = ImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer)
    with torch.no_grad():
        visual = model.model.visual
        for block in visual.blocks:
            block.attn.proj.weight.mul_(damping)
            block.attn.proj.bias.mul_(damping)
            block.mlp.down_proj.weight.mul_(damping)
            block.mlp.down_proj.bias.mul_(damping)
        conv = visual.patch_embed.proj.weight  # [hidden, 3, t, patch, patch]
        conv.copy_(conv.mean(dim=(2, 3, 4), keepdim=True).expand_as(conv).clone())
        _damp_language(model, damping)
        features = {}
        for word, rgb in colours.items():
            inputs = image_processor(images=Image.new("RGB", (112, 112), rgb), return_tensors="pt")
            merged = _image_features(model, pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
            features[word] = torch.cat(list(merged), dim=0).mean(dim=0)
        _plant_words(model, tokenizer, features, (*SPECIAL_TOKENS, *QWEN_SPECIAL_TOKENS), neutral_words=True)
    return _save(folder, model, processor)


def build_planted_qwen3_vl(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    vision_hidden: int = 64,
    text_hidden: int = 128,
    text_layers: int = 6,
    heads: int = 4,
    kv_heads: int = 2,
    max_pixels: int = 32 * 32 * 320,
    colours: dict[str, tuple[int, int, int]] | None = None,
    damping: float = 0.0,
    moe: bool = False,
) -> Path:
    """A planted-signal Qwen3-VL (or, ``moe``, Qwen3-VL-MoE) with three
    DeepStack levels at full strength: vision layers 0, 1, 2 of 3 feed the
    image positions after decoder layers 0, 1, 2 (as vision layers 8, 16, 24
    of 27 do in the released models). Planting as for Qwen2.5-VL, except that a
    colour word embeds as what an image token of that colour carries once all
    DeepStack features are added (the merged feature plus the three DeepStack
    features): the hidden state the default layers (3..5) read."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    text_config: dict[str, Any] = {}
    config_cls, model_cls = Qwen3VLConfig, Qwen3VLForConditionalGeneration
    if moe:
        from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

        config_cls, model_cls = Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration
        text_config = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=text_hidden, decoder_sparse_step=1)
    head_dim = text_hidden // heads
    section = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6]  # sums to head_dim / 2
    text_config.update(rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": section,
                                        "mrope_interleaved": True}, head_dim=head_dim)
    vision_config = dict(deepstack_visual_indexes=[0, 1, 2], num_position_embeddings=576)
    return _build_planted_qwen_native(
        folder, config_cls, model_cls, "Qwen3VLProcessor", seed=seed, vision_hidden=vision_hidden,
        vision_depth=3, vision_config=vision_config, text_hidden=text_hidden, text_layers=text_layers, heads=heads,
        kv_heads=kv_heads, text_config=text_config, max_pixels=max_pixels, colours=colours, damping=damping,
    )


def build_planted_qwen3_5(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    vision_hidden: int = 64,
    text_hidden: int = 128,
    text_layers: int = 8,
    heads: int = 4,
    kv_heads: int = 2,
    linear_heads: int = 4,
    max_pixels: int = 32 * 32 * 320,
    colours: dict[str, tuple[int, int, int]] | None = None,
    damping: float = 0.0,
) -> Path:
    """A planted-signal Qwen3.5: the released layer pattern (linear,
    linear, linear, full; here layers 3 and 7 are full attention) and
    Gated DeltaNet layers with ``linear_heads`` value heads. Planting as for
    Qwen2.5-VL (no DeepStack here); damping scales the linear-attention
    layers' ``out_proj`` like the attention layers' ``o_proj``."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    head_dim = text_hidden // heads
    rotary_half = head_dim // 8  # partial_rotary_factor 0.25 of head_dim, halved
    section = [rotary_half - 2 * (rotary_half // 3), rotary_half // 3, rotary_half // 3]
    text_config = dict(
        head_dim=head_dim, linear_num_key_heads=max(1, linear_heads // 2), linear_num_value_heads=linear_heads,
        linear_key_head_dim=head_dim // 2, linear_value_head_dim=head_dim // 2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "mrope_section": section,
                         "mrope_interleaved": True, "partial_rotary_factor": 0.25},
    )
    return _build_planted_qwen_native(
        folder, Qwen3_5Config, Qwen3_5ForConditionalGeneration, "Qwen3VLProcessor", seed=seed,
        vision_hidden=vision_hidden, vision_depth=2, vision_config=dict(num_position_embeddings=576),
        text_hidden=text_hidden, text_layers=text_layers, heads=heads, kv_heads=kv_heads, text_config=text_config,
        max_pixels=max_pixels, colours=colours, damping=damping, byte_level=True,
    )


def _build_planted_qwen_native(
    folder: str | os.PathLike,
    config_cls: Any,
    model_cls: Any,
    processor_class: str,
    *,
    seed: int,
    vision_hidden: int,
    vision_depth: int,
    vision_config: dict[str, Any],
    text_hidden: int,
    text_layers: int,
    heads: int,
    kv_heads: int,
    text_config: dict[str, Any],
    max_pixels: int,
    colours: dict[str, tuple[int, int, int]] | None,
    damping: float,
    byte_level: bool = False,
) -> Path:
    """The Qwen3-generation planted models (16-px patches, 2x2 merge, a learned
    position grid, an image-only processor): vision blocks and language output
    projections scaled by ``damping``, position embeddings by 0.01, patch
    embeddings a function of the patch's mean colour; each colour word embeds
    as the merged feature of a solid patch of that colour plus its DeepStack
    features where the model has them; other words as zero."""
    import torch

    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as ImageProcessor,
        )
    except ImportError:  # transformers 4.x
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    from .mllm.qwen2_5_vl import image_only_processor_class

    colours = colours or COLOURS
    torch.manual_seed(seed)
    tokenizer = byte_level_tokenizer() if byte_level else build_tokenizer(family="qwen")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = config_cls(
        vision_config=dict(
            depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=2,
            out_hidden_size=text_hidden, patch_size=16, spatial_merge_size=2, temporal_patch_size=2, **vision_config,
        ),
        text_config=dict(
            hidden_size=text_hidden, intermediate_size=int(2.6875 * text_hidden), num_hidden_layers=text_layers,
            num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
            max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **text_config,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = model_cls(config).train(False)
    image_processor = ImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=64 * 64, max_pixels=max_pixels,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    processor = image_only_processor_class(
        processor_class, vision_start_token="<|vision_start|>", vision_end_token="<|vision_end|>"
    )(image_processor=image_processor, tokenizer=tokenizer)
    with torch.no_grad():
        visual = model.model.visual
        for block in visual.blocks:
            for linear in (block.attn.proj, block.mlp.linear_fc2):
                linear.weight.mul_(damping)
                linear.bias.mul_(damping)
        visual.pos_embed.weight.mul_(0.01)
        conv = visual.patch_embed.proj.weight  # [hidden, 3, t, patch, patch]
        conv.copy_(conv.mean(dim=(2, 3, 4), keepdim=True).expand_as(conv).clone())
        _damp_language(model, damping)
        features = {}
        for word, rgb in colours.items():
            inputs = image_processor(images=Image.new("RGB", (128, 128), rgb), return_tensors="pt")
            out = model.model.get_image_features(pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
            feature = torch.cat(list(out.pooler_output), dim=0).mean(dim=0)
            for level in getattr(out, "deepstack_features", None) or []:  # what DeepStack adds to the image positions
                feature = feature + torch.cat(list(level), dim=0).mean(dim=0)
            features[word] = feature
        forms = {form: feature for word, feature in features.items()  # byte-level: "red" and "Ġred" are two tokens
                 for form in (word, "\u0120" + word) if tokenizer.convert_tokens_to_ids(form) != tokenizer.unk_token_id}
        _plant_words(model, tokenizer, forms, (*SPECIAL_TOKENS, *QWEN_SPECIAL_TOKENS), neutral_words=True)
    return _save(folder, model, processor)


def build_planted_llava_onevision(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    vision_hidden: int = 64,
    text_hidden: int = 128,
    text_layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    crop_side: int = 112,
    patch: int = 14,
    max_crops: int = 9,
    colours: dict[str, tuple[int, int, int]] | None = None,
    damping: float = 0.0,
) -> Path:
    """A planted-signal LLaVA-OneVision (SigLIP tower + Qwen2), saved with an
    image-only processor. Small crops (``crop_side``) keep AnyRes prompts short
    on a CPU; the pinpoints are 1x1 .. 3x3 crops, as OV's grid is up to 6x6."""
    import torch
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    try:
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil as ImageProcessor,
        )
    except ImportError:  # transformers 4.x
        from transformers import LlavaOnevisionImageProcessor as ImageProcessor

    from .mllm.llava_onevision import image_only_processor_class

    colours = colours or COLOURS
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    pinpoints = [[crop_side * r, crop_side * c] for r in range(1, 4) for c in range(1, 4)]
    config = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
            num_hidden_layers=2, num_attention_heads=2, image_size=crop_side, patch_size=patch,
        ),
        text_config=dict(
            model_type="qwen2", hidden_size=text_hidden, intermediate_size=int(2.6875 * text_hidden),
            num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
            vocab_size=len(tokenizer), max_position_embeddings=8192, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), video_token_id=tokenizer.unk_token_id,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio=f"anyres_max_{max_crops}",
        vision_feature_layer=-1, vision_feature_select_strategy="full",
    )
    model = LlavaOnevisionForConditionalGeneration(config).train(False)
    image_processor = ImageProcessor(
        size={"height": crop_side, "width": crop_side}, crop_size={"height": crop_side, "width": crop_side},
        image_grid_pinpoints=pinpoints,
    )
    processor = image_only_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=(crop_side // patch) ** 2,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE, vision_aspect_ratio=f"anyres_max_{max_crops}",
    )
    with torch.no_grad():
        _damp(model, damping)
        features = {}
        for word, rgb in colours.items():
            inputs = image_processor(images=Image.new("RGB", (crop_side, crop_side), rgb), return_tensors="pt")
            crops = _image_features(model, pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
            features[word] = torch.cat([c.reshape(-1, c.shape[-1]) for c in crops], dim=0).mean(dim=0)
        _plant_words(model, tokenizer, features, SPECIAL_TOKENS, neutral_words=True)
    return _save(folder, model, processor)


def synthetic_scene(
    size: tuple[int, int],
    target_box: tuple[int, int, int, int],
    *,
    colour: str = "red",
    shape: str = "square",
    distractors: int = 12,
    distractor_colours: Sequence[str] = ("blue", "green", "white", "yellow"),
    seed: int = 0,
) -> Image.Image:
    """A grey scene with one ``colour`` ``shape`` (square or star) filling
    ``target_box`` and distractor shapes of other colours kept clear of it."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, (118, 124, 118))
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = target_box
    side = max(x1 - x0, y1 - y0)
    placed = 0
    for _ in range(100 * max(1, distractors)):
        if placed == distractors:
            break
        w, h = (int(v) for v in rng.integers(max(2, side // 2), side + 2, size=2))
        x, y = int(rng.integers(0, max(1, width - w))), int(rng.integers(0, max(1, height - h)))
        if x < x1 + side and x + w > x0 - side and y < y1 + side and y + h > y0 - side:
            continue  # keep the target's surroundings clear
        fill = COLOURS[distractor_colours[placed % len(distractor_colours)]]
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle((x, y, x + w, y + h), fill=fill)
        elif kind == 1:
            draw.ellipse((x, y, x + w, y + h), fill=fill)
        else:
            draw.polygon([(x + w // 2, y), (x + w, y + h), (x, y + h)], fill=fill)
        placed += 1
    if shape == "star":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        outer = min(x1 - x0, y1 - y0) / 2
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else outer * 0.4
            angle = np.pi / 2 + k * np.pi / 5
            points.append((cx + radius * np.cos(angle), cy - radius * np.sin(angle)))
        draw.polygon(points, fill=COLOURS[colour])
    else:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=COLOURS[colour])
    return image
