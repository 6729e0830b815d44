"""Known models and their one-time download (the hub replaced: tests never reach it)."""

from __future__ import annotations

import inspect

import pytest

from helpers import set_hub_offline
from focus_engine.errors import FocusModelError
from focus_engine.mllm.catalog import (
    INCOMPLETE_MARKER, KNOWN_MODELS, MODEL_FILES, ensure_downloaded, is_complete, known_model, progress_tqdm,
)


FILES = {"config.json": 2, "model.safetensors": 200, "tokenizer.json": 2}


class FakeHub:
    """Stands in for the hub: ``files`` lists a repo (with one pickled copy
    of the weights that must not be fetched); calling it is snapshot_download:
    it records each call, reports progress through the given tqdm class, and
    writes the files not there yet, as a resumed download does."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[dict] = []
        self.fail = fail
        self.present_at_call: list[set[str]] = []
        self.listed: list[str] = []

    def files(self, repo_id: str) -> dict:
        self.listed.append(repo_id)
        if isinstance(self.fail, ConnectionError):
            raise self.fail
        return {**FILES, "pytorch_model.bin": 400, "README.md": 10}

    def __call__(self, **kwargs):
        from pathlib import Path

        self.calls.append(kwargs)
        folder = Path(kwargs["local_dir"])
        self.present_at_call.append({p.name for p in folder.iterdir()})
        if self.fail is not None:
            raise self.fail
        tqdm_class = kwargs.get("tqdm_class")
        bar = tqdm_class(total=300, unit="B") if tqdm_class else None
        for name, text in (("config.json", "{}"), ("model.safetensors", "w" * 200), ("tokenizer.json", "{}")):
            if not (folder / name).exists():
                (folder / name).write_text(text)
            if bar is not None:
                bar.update(100)
        if bar is not None:
            bar.close()
        return str(folder)


@pytest.fixture
def online(monkeypatch):
    set_hub_offline(monkeypatch, False)


def test_the_curated_models_are_there():
    repos = {m.repo_id for m in KNOWN_MODELS.values()}
    for repo in ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                 "llava-hf/llava-onevision-qwen2-7b-ov-hf", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"):
        assert repo in repos
    assert all(name == m.repo_id.split("/")[1] for name, m in KNOWN_MODELS.items())  # folder name = repo name
    assert known_model("llava-1.5-7b-hf").family == "llava" and known_model("nope") is None


def test_the_docs_list_every_known_model_and_whether_it_thinks():
    """The docs' table of known models (docs/comfyui.md): one row per
    catalog entry, with its repo and a "yes" exactly where the model thinks
    by default."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "comfyui.md").read_text(encoding="utf-8")
    table = readme[readme.index("| name in the list |"):].split("\n\n")[0]
    rows = {m.group(1): (m.group(2), m.group(3).strip())
            for m in re.finditer(r"^\| `([^`]+)` \| `([^`]+)` \| [^|]+ \|([^|\n]*)\|$", table, flags=re.MULTILINE)}
    assert {name: (m.repo_id, "yes" if m.thinks_by_default else "") for name, m in KNOWN_MODELS.items()} == rows
    assert known_model("Qwen3.5-4B").thinks_by_default and not known_model("Qwen3.5-2B").thinks_by_default


def test_a_complete_folder_is_never_looked_up(tmp_path, online):
    model = known_model("llava-1.5-7b-hf")
    folder = tmp_path / model.name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    hub = FakeHub(fail=AssertionError("the hub must not be called"))
    assert ensure_downloaded(model, tmp_path, download=hub, list_files=hub.files) == folder
    assert hub.calls == [] and hub.listed == []


def test_download_into_the_models_folder_with_progress(tmp_path, online):
    model = known_model("Qwen2.5-VL-3B-Instruct")
    hub, seen = FakeHub(), []
    folder = ensure_downloaded(model, tmp_path, download=hub, list_files=hub.files,
                               progress=lambda done, total: seen.append((done, total)))
    assert folder == tmp_path / "Qwen2.5-VL-3B-Instruct" and is_complete(folder)
    (call,) = hub.calls
    assert call["repo_id"] == "Qwen/Qwen2.5-VL-3B-Instruct" and call["local_dir"] == str(folder)
    assert "*.safetensors" in call["allow_patterns"] and "*.json" in call["allow_patterns"]
    assert not any(p.endswith((".bin", ".pth", ".onnx")) for p in call["allow_patterns"])
    assert seen[-1] == (300, 300) and (100, 300) in seen  # bytes, as the hub's bar counts them
    assert not (folder / INCOMPLETE_MARKER).exists()


def test_the_download_arguments_fit_huggingface_hub():
    from huggingface_hub import snapshot_download

    inspect.signature(snapshot_download).bind(
        repo_id="x/y", local_dir="/tmp/x", allow_patterns=list(MODEL_FILES), tqdm_class=progress_tqdm(print)
    )


def test_an_interrupted_download_is_resumed(tmp_path, online):
    model = known_model("llava-1.5-7b-hf")
    broken = FakeHub(fail=OSError("connection reset by peer"))
    with pytest.raises(FocusModelError, match="llava-hf/llava-1.5-7b-hf"):
        ensure_downloaded(model, tmp_path, download=broken, list_files=broken.files)
    folder = tmp_path / model.name
    (folder / "config.json").write_text("{}")  # what the cut-off download had already written
    assert (folder / INCOMPLETE_MARKER).exists() and not is_complete(folder)
    hub = FakeHub()
    assert ensure_downloaded(model, tmp_path, download=hub, list_files=hub.files) == folder
    assert len(hub.calls) == 1 and "config.json" in hub.present_at_call[0]  # same folder, files kept
    assert is_complete(folder)


def test_offline_says_which_repo_which_folder_which_files(tmp_path, monkeypatch):
    set_hub_offline(monkeypatch, True)
    model = known_model("llava-onevision-qwen2-0.5b-ov-hf")
    hub = FakeHub(fail=AssertionError("offline: the hub must not be called"))
    with pytest.raises(FocusModelError) as err:
        ensure_downloaded(model, tmp_path, download=hub, list_files=hub.files)
    text = str(err.value)
    assert "HF_HUB_OFFLINE" in text and "llava-hf/llava-onevision-qwen2-0.5b-ov-hf" in text
    assert str(tmp_path / model.name) in text and "config.json" in text and ".safetensors" in text
    assert hub.calls == [] and hub.listed == []


def test_no_network_gives_the_same_help(tmp_path, online):
    model = known_model("Qwen2.5-VL-7B-Instruct")
    hub = FakeHub(fail=ConnectionError("Name or service not known"))
    with pytest.raises(FocusModelError, match="no connection to the Hugging Face hub") as err:
        ensure_downloaded(model, tmp_path, download=hub, list_files=hub.files)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in str(err.value) and "--local-dir" in str(err.value)
    assert hub.calls == []


def test_a_download_cut_short_is_not_taken_for_complete(tmp_path, online):
    class Short(FakeHub):
        def files(self, repo_id):
            return {**FILES, "model.safetensors": 999}  # the hub's size; the fake writes 200 bytes

    hub = Short()
    with pytest.raises(FocusModelError, match="model.safetensors.*run it again to resume"):
        ensure_downloaded(known_model("llava-1.5-7b-hf"), tmp_path, download=hub, list_files=hub.files)
    assert not is_complete(tmp_path / "llava-1.5-7b-hf")


def test_the_real_hub_client_unreachable_gives_the_offline_help(tmp_path):
    """huggingface_hub itself, pointed at a closed port: its own errors (not
    a fake's) become the message, and no folder is taken for complete."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from focus_engine.mllm.catalog import ensure_downloaded, known_model\n"
        "try:\n"
        "    ensure_downloaded(known_model('llava-1.5-7b-hf'), sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=120).stdout
    assert out.startswith("FocusModelError") and "no connection to the Hugging Face hub" in out
    assert "llava-hf/llava-1.5-7b-hf" in out and not is_complete(tmp_path / "llava-1.5-7b-hf")


def test_progress_counts_bytes_over_every_bar():
    seen = []
    bar_class = progress_tqdm(lambda done, total: seen.append((done, total)))
    files = bar_class(total=2, unit="it")  # the hub's file counter ...
    first, second = bar_class(total=1000, unit="B"), bar_class(total=3000, unit="B")  # ... and two byte bars
    first.update(1000)
    second.update(1500)
    files.update(1)
    assert seen[-1] == (2500, 4000)
    for bar in (files, first, second):
        bar.close()
