"""A workflow is untrusted input (issue 24): model names stay inside the
model folders, the work per prompt is bounded, no code runs from a model
folder, and Cancel stops a search within one model call. The whole
crafted-workflow run is tests/test_stranger.py."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import pytest

from helpers import image_batch
from test_nodes_load import comfy  # noqa: F401 - the stubbed ComfyUI modules (a fixture)

LONG_QUESTION = "Where is the red square next to the small blue circle? " * 400
"""~22,000 characters: more tokens than the tiny model's 4096 positions."""


# ------------------------------------------------------------ model names
@pytest.fixture
def models(pack, comfy, planted_dir, tmp_path):  # noqa: F811
    """models/LLM with one model, and a model folder outside it."""
    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    outside = tmp_path / "elsewhere" / "secret-model"
    shutil.copytree(planted_dir, outside)
    return types.SimpleNamespace(root=comfy.models, outside=outside, node=pack.nodes.load_mllm.FocusLoadMLLM)


def escapes(models) -> dict[str, str]:
    """Widget values that name the outside folder (each exists on disk)."""
    relative = os.path.relpath(models.outside, models.root)
    return {
        "absolute": str(models.outside),
        "relative": relative,
        "dot-dot inside": f"tiny-llava/../{relative}",
        "home": "~/" + relative,
        "child of a folder": "tiny-llava/../tiny-llava",
        "backslash": relative.replace("/", "\\"),
    }


def test_a_path_in_the_model_widget_is_refused_at_validation(models):
    for what, value in escapes(models).items():
        message = models.node.VALIDATE_INPUTS(model=value)
        assert message is not True, f"{what}: {value!r} was accepted"
        assert "not a path" in message, what
        with pytest.raises(ValueError, match="not a path"):
            models.node().load(value, "auto", "auto", "cpu", True)
    assert models.node.VALIDATE_INPUTS(model="tiny-llava") is True


def test_the_refusal_does_not_tell_whether_the_path_exists(models):
    there = models.node.VALIDATE_INPUTS(model=str(models.outside))
    missing = models.node.VALIDATE_INPUTS(model=str(models.outside.parent / "nothing-here"))
    assert there.replace(str(models.outside), "X") == missing.replace(str(models.outside.parent / "nothing-here"), "X")
    assert "exist" not in there and "not found" not in there


def test_a_symlink_out_of_every_root_is_not_followed(models, comfy, tmp_path):  # noqa: F811
    os.symlink(models.outside, models.root / "linked-out", target_is_directory=True)
    assert models.node.VALIDATE_INPUTS(model="linked-out") is not True
    assert "linked-out" not in models.node.INPUT_TYPES()["required"]["model"][0]
    # a symlink to a folder of another registered root (extra_model_paths.yaml) is fine
    other_root = tmp_path / "other_root"
    shutil.copytree(models.outside, other_root / "shared-model")
    comfy.roots["LLM"].append(str(other_root))
    os.symlink(other_root / "shared-model", models.root / "linked-in", target_is_directory=True)
    assert models.node.VALIDATE_INPUTS(model="linked-in") is True
    assert models.node.VALIDATE_INPUTS(model="shared-model") is True
    assert {"linked-in", "shared-model", "tiny-llava"} <= set(models.node.INPUT_TYPES()["required"]["model"][0])


def test_outside_comfyui_the_root_is_the_one_the_caller_sets(pack, planted_dir, tmp_path, monkeypatch):
    bridge = pack.nodes.bridge
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # no ComfyUI: import folder_paths fails
    shutil.copytree(planted_dir, tmp_path / "models" / "tiny-llava")
    assert bridge.model_roots() == []
    monkeypatch.setattr(bridge, "MODELS_DIR_OUTSIDE_COMFYUI", str(tmp_path / "models"))
    assert bridge.find_model_folder("tiny-llava") == os.path.realpath(tmp_path / "models" / "tiny-llava")
    assert bridge.find_model_folder(str(tmp_path / "models" / "tiny-llava")) is None
    assert bridge.find_model_folder("../models/tiny-llava") is None


def test_the_python_api_still_takes_any_path(pack, models):
    """The command line and load_mllm are the user's own: any folder."""
    mllm = pack.focus_engine.load_mllm(str(models.outside))
    assert mllm.family == "llava"


# ------------------------------------------------------------------ bounds
def test_hundreds_of_targets_are_refused_at_once(pack, pack_planted):
    engine = pack.focus_engine
    many = ", ".join(f"object {i}" for i in range(300))
    started = time.perf_counter()
    with pytest.raises(engine.errors.FocusInputError, match=r"300 targets given; .* at most 8"):
        engine.targets.given_targets(many)
    with pytest.raises(ValueError, match="at most 8 objects"):
        pack.nodes.helpers.FocusVQA().run(pack_planted, image_batch(1), "Where is the red square?", 4, "", many)
    with pytest.raises(ValueError, match="at most 8 objects"):
        pack.nodes.stages.FocusExtractTargets().extract(pack_planted, "Where?", many)
    assert time.perf_counter() - started < 5
    assert engine.targets.given_targets(", ".join(f"thing {i}" for i in range(8))).names[-1] == "thing 7"
    with pytest.raises(engine.errors.FocusInputError, match="characters long"):
        engine.targets.given_targets("red " * 100)


def test_a_model_naming_many_objects_is_cut_to_the_bound(pack, pack_planted, monkeypatch):
    targets = pack.focus_engine.targets
    lead = targets.LEAD_IN
    monkeypatch.setattr(type(pack_planted), "reply", lambda self, *a, **k: pack.focus_engine.mllm.runtime.Decoded(
        lead + " " + ", ".join(f"thing{i}" for i in range(20)) + ".", [1.0]))
    found = targets.extract_targets(pack_planted, "What?", pack.focus_engine.FocusConfig())
    assert len(found.names) == 8 and "named 20 objects" in found.note


def test_a_question_longer_than_the_context_is_refused_with_the_numbers(pack, pack_planted):
    started = time.perf_counter()
    with pytest.raises(ValueError) as err:
        pack.nodes.helpers.FocusVQA().run(pack_planted, image_batch(1), LONG_QUESTION, 4, "", "red")
    message = str(err.value)
    assert "too long for this model" in message and "4096" in message and "max_position_embeddings" in message
    assert "Shorten it by at least" in message
    with pytest.raises(ValueError, match="too long for this model"):
        pack.nodes.stages.FocusExtractTargets().extract(pack_planted, LONG_QUESTION, "")
    assert time.perf_counter() - started < 10  # refused before any model call


def test_long_options_count_against_the_context(pack, pack_planted):
    options = "\n".join(["a " * 1500] * 3)  # three options of 1500 words
    with pytest.raises(ValueError, match="the question with its options is too long"):
        pack.nodes.helpers.FocusVQA().run(pack_planted, image_batch(1), "Which?", 1, options, "red")


def test_the_answer_node_checks_the_context_too(pack, pack_planted):
    stages = pack.nodes.stages
    images = image_batch(1)
    targets, _ = stages.FocusExtractTargets().extract(pack_planted, "Where?", "red")
    relevance, _, _ = stages.FocusRelevanceMap().relevance(pack_planted, images, targets, 0, 0, "values")
    rois, *_ = stages.FocusProposeROIs().propose(relevance, 0, 3.0, 0, 0, 0.5, 0.3)
    with pytest.raises(ValueError, match="too long for this model"):
        stages.FocusAnswer().answer(pack_planted, images, LONG_QUESTION, rois, targets)


def test_the_context_check_counts_tokens_after_the_image(pack, pack_planted):
    inputs = pack.focus_engine.inputs
    from PIL import Image

    image = Image.new("RGB", (400, 300))
    with_image = pack_planted.prompt_length("Where is it?", image)
    assert with_image - pack_planted.prompt_length("Where is it?") >= 576 - 1  # LLaVA-1.5's 24x24 image tokens
    limit = pack_planted.context_length
    fits = "word " * (limit - with_image - 80)
    inputs.check_fits_context(pack_planted, fits, image, reserve=64)
    with pytest.raises(pack.focus_engine.errors.FocusInputError) as err:
        inputs.check_fits_context(pack_planted, fits + "word " * 100, image, reserve=64)
    assert f"context of {limit} tokens" in str(err.value)


def test_what_fits_as_text_but_not_with_the_image_is_refused_before_the_image_call(pack, pack_planted):
    """The hot path counts the question's text only (no pixels); the image's
    576 tokens are counted by the adapter on the real inputs of each call:
    the short existence and verification prompts run, the answer prompt is
    refused before the model sees it."""
    engine = pack.focus_engine
    from PIL import Image

    image = Image.new("RGB", (400, 300))
    text_only = pack_planted.prompt_length("Where is it?")
    question = "Where is it? " + "word " * (pack_planted.context_length - text_only - 64 - 300)
    assert pack_planted.prompt_length(question) + 64 <= pack_planted.context_length  # the text alone fits
    counter = pack_planted.counter
    before = (counter.forward_passes, counter.generate_calls)
    with pytest.raises(engine.errors.FocusInputError) as err:
        engine.FocusPipeline(pack_planted, engine.FocusConfig()).run(image, question, targets=["red square"])
    assert "tokens included" in str(err.value) and f"context of {pack_planted.context_length}" in str(err.value)
    assert counter.generate_calls == before[1]  # the answer was never decoded
    assert counter.forward_passes - before[0] == 2  # one existence prefill, one verification: short prompts


def test_every_number_widget_has_a_bound(pack):
    """ComfyUI refuses a value outside a widget's min/max at validation: every
    INT and FLOAT of the pack has both, and none lets work grow without end."""
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                if entry[0] in ("INT", "FLOAT"):
                    assert "min" in entry[1] and "max" in entry[1], f"{node_id}.{name}"
    vqa = pack.NODE_CLASS_MAPPINGS["FocusVQA"].INPUT_TYPES()["required"]
    assert vqa["n_steps"][1]["max"] == 32
    draw = pack.NODE_CLASS_MAPPINGS["FocusDrawROIs"].INPUT_TYPES()["required"]
    mask = pack.NODE_CLASS_MAPPINGS["FocusROIsToMask"].INPUT_TYPES()["required"]
    assert draw["top_n"][1]["max"] <= 200 and mask["top_n"][1]["max"] <= 200


def test_a_socket_fed_something_else_is_a_clear_node_error(pack, pack_planted):
    images = image_batch(1)
    with pytest.raises(ValueError, match="mllm input takes the output of FOCUS · Load MLLM, not a Tensor"):
        pack.nodes.helpers.FocusVQA().run(images, images, "Where?", 1)
    with pytest.raises(ValueError, match="targets input takes the output of FOCUS · Extract Targets, not a str"):
        pack.nodes.stages.FocusRelevanceMap().relevance(pack_planted, images, "red", 0, 0, "values")
    with pytest.raises(ValueError, match="relevance input"):
        pack.nodes.stages.FocusProposeROIs().propose(images, 0, 3.0, 0, 0, 0.5, 0.3)
    with pytest.raises(ValueError, match="rois input"):
        pack.nodes.helpers.FocusDrawROIs().draw(images, [[0, 0, 5, 5]], 3)


# ------------------------------------------------------------------ cancel
def test_cancel_stops_a_search_within_one_model_call(pack, comfy, pack_planted, monkeypatch):  # noqa: F811
    """Cancel pressed after the search's first model call: at most one more
    call runs, and ComfyUI's own interruption is raised."""

    class InterruptProcessingException(Exception):
        pass

    calls = {"n": 0, "cancelled_at": None}
    mm = sys.modules["comfy.model_management"]

    def cancelled() -> bool:
        return calls["cancelled_at"] is not None

    def throw() -> None:
        if cancelled():
            raise InterruptProcessingException()

    monkeypatch.setattr(mm, "processing_interrupted", cancelled)
    monkeypatch.setattr(mm, "throw_exception_if_processing_interrupted", throw)

    def count(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == press_at and calls["cancelled_at"] is None:
            calls["cancelled_at"] = calls["n"]

    for press_at in (1, 2, 3, 5):
        calls.update(n=0, cancelled_at=None)
        hook = pack_planted.model.register_forward_pre_hook(count, with_kwargs=True)
        try:
            with pytest.raises(InterruptProcessingException):
                pack.nodes.helpers.FocusVQA().run(pack_planted, image_batch(2), "Where is the red square?", 8, "",
                                                  "red, blue, green")
        finally:
            hook.remove()
        assert calls["n"] - calls["cancelled_at"] <= 1, (press_at, calls)


# ------------------------------------------------------- no code from a folder
def test_no_load_sets_trust_remote_code_and_weights_are_safetensors(pack, planted_dir, monkeypatch):
    import transformers

    seen = []
    for name in ("AutoConfig", "AutoModelForImageTextToText", "AutoProcessor", "AutoTokenizer", "AutoImageProcessor"):
        cls = getattr(transformers, name)
        real = cls.from_pretrained.__func__

        def recording(klass, *args, _real=real, _name=name, **kwargs):
            seen.append((_name, kwargs))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    pack.focus_engine.load_mllm(str(planted_dir))
    assert seen and all(kwargs.get("trust_remote_code") is False for _, kwargs in seen), seen
    weights = [kwargs for name, kwargs in seen if name == "AutoModelForImageTextToText"]
    assert weights and all(kwargs.get("use_safetensors") is True for kwargs in weights)


def test_code_in_a_model_folder_never_runs(pack, planted_dir, tmp_path):
    folder = tmp_path / "with-code"
    shutil.copytree(planted_dir, folder)
    marker = tmp_path / "ran"
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModelForImageTextToText": "custom.Model",
                          "AutoProcessor": "custom.Processor"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    mllm = pack.focus_engine.load_mllm(str(folder))
    assert mllm.family == "llava" and not marker.exists()


def test_pickled_weights_are_refused_with_a_message(pack, planted_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(planted_dir, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(pack.focus_engine.errors.FocusModelError) as err:
        pack.focus_engine.load_mllm(str(folder))
    assert "only pickled PyTorch weights (pytorch_model.bin)" in str(err.value)
    assert "safetensors" in str(err.value)


def test_a_chat_template_renders_only_in_the_sandbox(pack, planted_dir, tmp_path):
    folder = tmp_path / "template"
    shutil.copytree(planted_dir, folder)
    marker = tmp_path / "ran"
    (folder / "chat_template.jinja").write_text(
        "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
        "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(pack.focus_engine.errors.FocusModelError, match="sandbox refuses"):
        pack.focus_engine.load_mllm(str(folder))  # the loader renders a probe turn before the weights load
    assert not marker.exists()


def test_the_pack_never_renders_templates_or_loads_pickles_itself():
    root = Path(__file__).resolve().parents[1]
    for path in [*(root / "focus_engine").rglob("*.py"), *(root / "nodes").rglob("*.py")]:
        if path.name == "testing.py":  # builds the tiny test models
            continue
        text = path.read_text()
        for needle in ("trust_remote_code=True", "import jinja2", "from jinja2 import Template", "torch.load(",
                       "pickle.load", "weights_only=False"):
            assert needle not in text, f"{path.name}: {needle}"
