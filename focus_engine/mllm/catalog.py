"""Known models by name, and their one-time download into a models folder.

A known model is named by its folder (``llava-1.5-7b-hf``), the same name
before and after it is downloaded, so a workflow saved with it runs on a
machine that has never seen the model. A folder that is complete is used as
it is and the network is never contacted; one whose download was cut off
(it still holds ``INCOMPLETE_MARKER``) is resumed: huggingface_hub keeps the
finished files and the partial ones under ``<folder>/.cache`` and fetches
only what is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

from ..errors import FocusModelError
from .hf_loading import first_line, hub_offline

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``, in bytes where the hub reports sizes."""


@dataclass(frozen=True)
class KnownModel:
    name: str
    """Its folder name under the models folder."""
    repo_id: str
    family: str
    download_gb: float
    """About how much is downloaded (the safetensors weights)."""
    thinks_by_default: bool = False
    """Its chat template opens a reasoning block unless told not to; FOCUS
    renders every prompt non-thinking (``mllm/thinking.py``)."""


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel("llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf", "llava", 14.1),
        KnownModel("llava-1.5-13b-hf", "llava-hf/llava-1.5-13b-hf", "llava", 26.7),
        KnownModel("llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision", 1.8),
        KnownModel("llava-onevision-qwen2-7b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision", 16.1),
        KnownModel("Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", 7.5),
        KnownModel("Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 16.6),
        # Qwen3-VL and Qwen3.5: bf16 safetensors, sizes from the parameter counts (2 bytes each), not measured
        KnownModel("Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", 4.3),
        KnownModel("Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", 8.9),
        KnownModel("Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", 17.5),
        # Qwen3-VL Thinking (2025-10): not verifiable offline. The repo ids are named by xinference 4.1.0's
        # model list (its MLX conversions mlx-community/Qwen3-VL-{2B,4B,8B}-Thinking-bf16) and by stored model
        # pages; their config.json (model_type qwen3_vl, as the Instruct releases) and sizes were not seen:
        # the sizes are the Instruct releases' (same architecture). Their template thinks regardless of flags.
        KnownModel("Qwen3-VL-2B-Thinking", "Qwen/Qwen3-VL-2B-Thinking", "qwen3_vl", 4.3, thinks_by_default=True),
        KnownModel("Qwen3-VL-4B-Thinking", "Qwen/Qwen3-VL-4B-Thinking", "qwen3_vl", 8.9, thinks_by_default=True),
        KnownModel("Qwen3-VL-8B-Thinking", "Qwen/Qwen3-VL-8B-Thinking", "qwen3_vl", 17.5, thinks_by_default=True),
        # Qwen3.5: 0.8B and 2B ship a template that does not think by default, 4B and larger one that does
        KnownModel("Qwen3.5-0.8B", "Qwen/Qwen3.5-0.8B", "qwen3_5", 1.8),
        KnownModel("Qwen3.5-2B", "Qwen/Qwen3.5-2B", "qwen3_5", 4.6),
        KnownModel("Qwen3.5-4B", "Qwen/Qwen3.5-4B", "qwen3_5", 9.3, thinks_by_default=True),
        # Qwen3.6-27B (2026): model_type qwen3_5 (Qwen3_5ForConditionalGeneration, 48 linear + 16 full-attention
        # layers, a vision tower), 55.6 GB as its safetensors index totals, both as a stored blog quotes its
        # config.json and index; the repo id is in xinference 4.1.0's model list. Not verified against the hub.
        # Qwen3.6-35B-A3B is qwen3_5_moe, which no adapter maps yet.
        KnownModel("Qwen3.6-27B", "Qwen/Qwen3.6-27B", "qwen3_5", 55.6, thinks_by_default=True),
    )
}
"""The models the Load MLLM node offers to download, by folder name."""

MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")
"""What a model needs: configs, safetensors weights, tokenizer and processor
files, chat templates. Pickled ``*.bin``/``*.pth`` copies, ONNX exports and
images in the repos are not fetched."""

INCOMPLETE_MARKER = ".focus-download-incomplete"
"""Present in a folder while its download has not finished."""


def known_model(name: str) -> KnownModel | None:
    return KNOWN_MODELS.get(name)


def is_complete(folder: str | os.PathLike[str]) -> bool:
    """A model folder that can be loaded as it is: a config.json and no unfinished download."""
    path = Path(folder)
    return (path / "config.json").is_file() and not (path / INCOMPLETE_MARKER).exists()


def offline_message(model: KnownModel, folder: Path, reason: str) -> str:
    return (
        f"{model.name} is not downloaded yet and cannot be downloaded now ({reason}). Download it once on a "
        f"machine with internet, or by hand: create the folder {folder} and put there every file of "
        f"https://huggingface.co/{model.repo_id}/tree/main ending in {', '.join(p[1:] for p in MODEL_FILES)} "
        f"(config.json, the model*.safetensors weights and their index, the tokenizer and processor files, "
        f"about {model.download_gb:g} GB), e.g. `huggingface-cli download {model.repo_id} --local-dir {folder}`"
    )


def ensure_downloaded(
    model: KnownModel,
    models_dir: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    download: Callable[..., Any] | None = None,
    list_files: Callable[[str], dict[str, int | None]] | None = None,
) -> Path:
    """The folder of ``model`` under ``models_dir``, downloaded first if it is
    not complete there. The repo's file list is read first (which also tells
    that the hub is reachable: huggingface_hub's ``snapshot_download`` returns
    an existing folder as it is when it is not), then the files are fetched,
    then checked against the list (names and sizes). ``download`` and
    ``list_files`` stand in for the hub in tests. Offline (``HF_HUB_OFFLINE``)
    or without a network: a FocusModelError naming the repo, the folder and
    the files."""
    folder = Path(models_dir) / model.name
    if is_complete(folder):
        return folder
    if hub_offline():
        raise FocusModelError(offline_message(model, folder, "HF_HUB_OFFLINE is set"))
    if download is None:
        from huggingface_hub import snapshot_download as download
    try:
        wanted = needed_files((list_files or hub_files)(model.repo_id))
    except Exception as exc:  # noqa: BLE001 - network and hub errors end the same way
        raise FocusModelError(offline_message(model, folder, _reason(exc))) from exc
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INCOMPLETE_MARKER).write_text(f"downloading {model.repo_id}\n")
    except OSError as exc:
        raise FocusModelError(f"cannot write the model folder {folder}: {first_line(exc)}") from exc
    try:
        download(
            repo_id=model.repo_id,
            local_dir=str(folder),
            allow_patterns=list(MODEL_FILES),
            tqdm_class=progress_tqdm(progress) if progress is not None else None,
        )
    except Exception as exc:  # noqa: BLE001 - network, hub and disk errors all end the same way
        raise FocusModelError(offline_message(model, folder, _reason(exc))) from exc
    missing = [name for name, size in wanted.items()
               if not (folder / name).is_file() or (size is not None and (folder / name).stat().st_size != size)]
    if missing or "config.json" not in wanted:
        raise FocusModelError(
            f"the download of {model.repo_id} into {folder} is not complete ({len(missing)} of {len(wanted)} files "
            f"missing or cut short, e.g. {', '.join(missing[:3]) or 'config.json'}); run it again to resume"
        )
    (folder / INCOMPLETE_MARKER).unlink()
    return folder


def needed_files(files: dict[str, int | None]) -> dict[str, int | None]:
    """The files of a repo that ``MODEL_FILES`` selects, with their sizes."""
    return {name: size for name, size in files.items() if any(fnmatch(name, p) for p in MODEL_FILES)}


def hub_files(repo_id: str) -> dict[str, int | None]:
    """A hub repo's files and their sizes (one metadata request)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, files_metadata=True)
    return {sibling.rfilename: sibling.size for sibling in info.siblings or []}


def _reason(exc: BaseException) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectionError", "ConnectError", "Timeout",
                "ReadTimeout", "ConnectTimeout"}:
        return f"no connection to the Hugging Face hub: {first_line(exc)}"
    if names & {"GatedRepoError", "RepositoryNotFoundError"}:
        return f"the hub refused {first_line(exc)}; log in with `huggingface-cli login` if the repo is gated"
    return f"the download failed: {type(exc).__name__}: {first_line(exc)}; running again resumes it"


def progress_tqdm(progress: ProgressFn) -> type:
    """A tqdm class that reports every bar huggingface_hub opens to
    ``progress(done, total)``, summed over the bars counting bytes (or files,
    when no byte bar is open)."""
    from tqdm.auto import tqdm

    bars: list[Any] = []

    class ProgressTqdm(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("disable", False)
            super().__init__(*args, **kwargs)
            bars.append(self)
            self._report()

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self._report()
            return shown

        def _report(self) -> None:
            byte_bars = [b for b in bars if getattr(b, "unit", "it") == "B"] or bars
            total = sum(int(b.total or 0) for b in byte_bars)
            done = sum(int(b.n or 0) for b in byte_bars)
            if total > 0:
                progress(min(done, total), total)

    return ProgressTqdm
