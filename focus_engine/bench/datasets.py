"""Benchmark loaders: V*Bench's folder layout (which the synthetic world
writes), HRBench TSV files, MME-RealWorld(-Lite) JSON annotations and
TreeBench's TSV, all into one item type, ``BenchItem``.

Images are loaded lazily (``BenchItem.load_image()``): a TSV of 8K images is
gigabytes of base64, so its loader keeps only where each image is in the file.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
import string
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ..boxes import Box
from ..errors import FocusInputError
from ..images import to_pil_rgb

log = logging.getLogger("focus_engine")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
KINDS = ("vstar", "hrbench", "mme", "treebench")
VLMEVAL_IMAGE_REF_MAX = 64
"""VLMEvalKit TSVs store a repeated image once; other rows hold that row's
index (a short string) in the image column instead of base64."""


@dataclass(frozen=True)
class ImageRef:
    """Where an item's image is: a file, raw bytes, or a TSV row's column."""

    path: Path | None = None
    data: bytes | None = None
    tsv_offset: int | None = None
    tsv_column: int | None = None
    tsv_row: str | None = None
    """The row's ``index``, to name it when its image cannot be read."""

    def open(self) -> Image.Image:
        if self.data is not None:
            return _decode(io.BytesIO(self.data), "image bytes")
        if self.path is None:
            raise FocusInputError("this benchmark item has no image")
        if self.tsv_offset is not None and self.tsv_column is not None:
            where = f"{self.path}, row with index {self.tsv_row}" if self.tsv_row is not None else str(self.path)
            return _decode(io.BytesIO(_tsv_image_bytes(self.path, self.tsv_offset, self.tsv_column, where)), where)
        if not self.path.is_file():
            raise FocusInputError(f"image file {self.path} does not exist; check the dataset folder")
        with open(self.path, "rb") as fh:
            return _decode(io.BytesIO(fh.read()), str(self.path))


def _decode(stream: io.BytesIO, what: str) -> Image.Image:
    try:
        image = Image.open(stream)
        image.load()
    except OSError as exc:
        raise FocusInputError(f"cannot decode the image of {what}: {exc}") from None
    return to_pil_rgb(image)


@dataclass
class BenchItem:
    """One multiple-choice question of any benchmark.

    ``options`` are in the order shown to the model (letters A, B, ...);
    ``correct_index`` points at the right one. ``target_boxes`` are the
    ground-truth boxes ``(x0, y0, x1, y1)`` in original pixels (exclusive
    right/bottom), one per ``target_names`` entry; empty when the benchmark
    has none.
    """

    id: str
    dataset: str
    question: str
    options: list[str]
    correct_index: int
    category: str
    image: ImageRef
    subtype: str = ""
    target_names: list[str] = field(default_factory=list)
    target_boxes: list[Box] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    answer_reading: str = "default"
    """How a generated answer is read: ``default`` (``runner.choose_option``)
    or ``mme`` (MME-RealWorld's own extraction, ``runner.mme_choice``)."""

    @property
    def answer_letter(self) -> str:
        return string.ascii_uppercase[self.correct_index]

    @property
    def answer(self) -> str:
        return self.options[self.correct_index]

    def load_image(self) -> Image.Image:
        return self.image.open()


# ------------------------------------------------------------------ V*Bench
def shuffled_options(options: Sequence[str], item_id: str, seed: int | None) -> tuple[list[str], int]:
    """V*Bench lists the correct option first; show them in an order drawn
    from ``(seed, item_id)`` (the same for every method and run). ``seed=None``
    keeps the file's order. Returns (options, index of the correct one)."""
    order = list(range(len(options)))
    if seed is not None:
        random.Random(f"{seed}|{item_id}").shuffle(order)
    return [options[i] for i in order], order.index(0)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise FocusInputError(f"{path} is not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise FocusInputError(f"{path} is not valid JSON ({exc}); fix or remove the file") from None


def _vstar_annotation(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    options = data["options"]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise FocusInputError(f"{path}: 'options' must be a list of at least two strings (correct first)")
    names, boxes = data.get("target_object", []), data.get("bbox", [])
    if not isinstance(names, list) or not isinstance(boxes, list):
        raise FocusInputError(f"{path}: 'target_object' and 'bbox' must be lists")
    for box in boxes:
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise FocusInputError(f"{path}: every bbox must be [x, y, w, h] numbers, got {box!r}")
    return data


def _image_beside(annotation: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (annotation.with_suffix(suffix), annotation.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


VSTAR_CATEGORIES = ("direct_attributes", "relative_position")
"""The 191 questions of the standard V*Bench score; the dataset repository
also holds OCR/ and GPT4V-hard/, scored only when asked for."""


def load_vstar(
    folder: str | Path, *, option_seed: int | None = 0, name: str | None = None,
    categories: Sequence[str] | str | None = None,
) -> list[BenchItem]:
    """V*Bench's layout: category folders (``direct_attributes/``,
    ``relative_position/``) of ``NAME.jpg`` + ``NAME.json`` pairs (JSON:
    ``target_object``, ``bbox`` as ``[x, y, w, h]``, ``question``, ``options``
    with the correct one first). Options are shuffled by ``option_seed``.

    ``categories``: None = the standard two where present (else every
    folder, for sets of other names), ``"all"`` = every category folder, or
    a list of folder names. A JSON that is not an annotation (no question and
    options) is skipped with a warning. Target boxes
    are clipped to the image, as the official evaluation does."""
    root = _existing_dir(folder)
    dataset = name or root.name
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    chosen = _vstar_categories(root, present, categories)
    items = []
    for category in chosen:
        for annotation in sorted((root / category).glob("*.json")):
            item = _vstar_item(annotation, category, dataset, option_seed)
            if item is not None:
                items.append(item)
    if not items:
        raise FocusInputError(
            f"{root} holds no V*Bench items in {', '.join(chosen) or 'any folder'}: expected category folders "
            "(e.g. direct_attributes/) with NAME.jpg + NAME.json pairs"
        )
    return items


def _vstar_categories(root: Path, present: list[str], categories: Sequence[str] | str | None) -> list[str]:
    if categories == "all":
        return present
    if categories is None:
        standard = [c for c in VSTAR_CATEGORIES if c in present]
        others = [c for c in present if c not in VSTAR_CATEGORIES and any((root / c).glob("*.json"))]
        if standard and others:
            log.warning("V*Bench: scoring the standard %s; %s left out (--categories all, or name them, to "
                        "include them)", " + ".join(standard), ", ".join(others))
        return standard or present
    wanted = [categories] if isinstance(categories, str) else list(categories)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise FocusInputError(f"{root} has no category folder {', '.join(missing)}; it has {', '.join(present)}")
    return wanted


def _vstar_item(annotation: Path, category: str, dataset: str, seed: int | None) -> BenchItem | None:
    data = _read_json(annotation)
    if not isinstance(data, dict) or not {"question", "options"} <= set(data):
        log.warning("V*Bench: skipping %s: not a V*Bench annotation (no question and options)", annotation)
        return None
    data = _vstar_annotation(annotation, data)
    image_path = _image_beside(annotation)
    if image_path is None:
        raise FocusInputError(
            f"{annotation} has no image beside it (expected {annotation.stem} with one of {', '.join(IMAGE_SUFFIXES)})"
        )
    item_id = f"{category}/{annotation.stem}"
    options, correct = shuffled_options([o.strip() for o in data["options"]], item_id, seed)
    width, height = _image_size(image_path)
    boxes = [_clipped((x, y, x + w, y + h), width, height) for x, y, w, h in data.get("bbox", [])]
    extra = {k: v for k, v in data.items() if k not in ("question", "options", "target_object", "bbox")}
    return BenchItem(
        id=item_id, dataset=dataset, question=str(data["question"]).strip(), options=options,
        correct_index=correct, category=category, image=ImageRef(path=image_path),
        subtype=str(data.get("subtype", "")), target_names=[str(t) for t in data.get("target_object", [])],
        target_boxes=boxes, meta=extra,
    )


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the file's header (the pixels are not read)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as exc:
        raise FocusInputError(f"{path} is not a readable image: {exc}") from None


def _clipped(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (round(v) for v in box)
    return (min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height))


# ------------------------------------------------------------------ HRBench
def load_hrbench_tsv(path: str | Path, *, name: str | None = None) -> list[BenchItem]:
    """HRBench TSV: columns ``index, question, answer`` (a letter),
    ``category``, ``image`` (base64) and ``A`` .. ``D`` (more letters are
    taken if present). Options keep the file's order, which the answer
    letter refers to. A short ``image`` field names the ``index`` of the row
    holding the image (VLMEvalKit's way of storing a repeated image once)."""
    path = Path(path)
    header, rows = _tsv_rows(path)
    missing = [c for c in ("index", "question", "answer", "image", "A", "B") if c not in header]
    if missing:
        raise FocusInputError(
            f"{path}: missing column(s) {missing}; HRBench TSVs have index, question, answer, category, image, A..D"
        )
    image_col = header.index("image")
    return [_hrbench_item(path, record, image_offset, image_col, name or path.stem)
            for record, image_offset in _rows_with_images(path, rows)]


def _rows_with_images(path: Path, rows: list[tuple[int, dict[str, str]]]) -> list[tuple[dict[str, str], int]]:
    """Each row with the byte offset of the row holding its image: its own,
    or the row whose ``index`` its short ``image`` field names."""
    by_index = {record["index"]: offset for offset, record in rows}
    found = []
    for offset, record in rows:
        image_offset = offset
        if record["image"] != _BASE64_MARK:
            image_offset = by_index.get(record["image"].strip(), -1)
            if image_offset < 0:
                raise FocusInputError(
                    f"{path}: row {record['index']} refers to the image of row {record['image']!r}, which is missing"
                )
        found.append((record, image_offset))
    return found


def _hrbench_item(path: Path, record: dict[str, str], offset: int, image_col: int, dataset: str) -> BenchItem:
    letters = [c for c in string.ascii_uppercase if record.get(c, "").strip()]
    if letters != list(string.ascii_uppercase[: len(letters)]) or len(letters) < 2:
        raise FocusInputError(f"{path}: row {record['index']} needs options in columns A, B, ... without gaps")
    answer = record["answer"].strip().upper()
    if answer not in letters:
        raise FocusInputError(f"{path}: row {record['index']} has answer {record['answer']!r}, not one of {letters}")
    return BenchItem(
        id=str(record["index"]), dataset=dataset, question=record["question"].strip(),
        options=[record[c].strip() for c in letters], correct_index=letters.index(answer),
        category=record.get("category", "").strip() or "all",
        image=ImageRef(path=path, tsv_offset=offset, tsv_column=image_col, tsv_row=str(record["index"])),
        meta={k: v for k, v in record.items() if k not in ("image", "question", "answer", *letters)},
    )


def _raise_csv_limit() -> None:
    # base64 images are far longer than csv's default 128 KiB field limit
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


_BASE64_MARK = "<base64>"


def _tsv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """``_tsv_index`` of a TSV file that exists and has rows."""
    if not path.is_file():
        raise FocusInputError(f"TSV file {path} does not exist")
    header, rows = _tsv_index(path)
    if not rows:
        raise FocusInputError(f"{path} has a header but no rows: the dataset is empty")
    return header, rows


def _tsv_index(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and, for every data row, its byte offset and its fields
    (the image column replaced by a marker unless it is a short reference
    to another row), so the base64 payloads never stay in memory."""
    _raise_csv_limit()
    rows = []
    with open(path, "rb") as fh:
        header_line = fh.readline()
        if not header_line.strip():
            raise FocusInputError(f"{path} is empty: expected a TSV header (index, question, answer, ...)")
        header = next(csv.reader([header_line.decode("utf-8-sig").rstrip("\r\n")], delimiter="\t"))
        while True:
            offset = fh.tell()
            fields = _read_tsv_record(fh, len(header), path)
            if fields is None:
                return header, rows
            record = dict(zip(header, fields))
            if len(record.get("image", "")) > VLMEVAL_IMAGE_REF_MAX:
                record["image"] = _BASE64_MARK
            rows.append((offset, record))


def _read_tsv_record(fh: Any, n_columns: int, path: Path) -> list[str] | None:
    """One TSV record from the binary file (several lines when a quoted
    field holds a newline); None at the end of the file."""
    text = ""
    while True:
        line = fh.readline()
        if not line:
            if text.strip():
                raise FocusInputError(f"{path}: the last row is cut off (an unclosed quote?)")
            return None
        text += line.decode("utf-8")
        if not text.strip():
            text = ""
            continue
        try:
            fields = next(csv.reader([text.rstrip("\r\n")], delimiter="\t", strict=True))
        except csv.Error:
            continue  # a quoted field goes on in the next line
        if len(fields) >= n_columns:
            return fields


def _tsv_image_bytes(path: Path, offset: int, column: int, where: str) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        fields = _read_tsv_record(fh, column + 1, path)
    if fields is None or len(fields) <= column:
        raise FocusInputError(f"{where}: no image at byte {offset}; the file changed since it was loaded")
    try:
        return base64.b64decode(fields[column], validate=False)
    except ValueError as exc:
        raise FocusInputError(f"{where}: the image is not valid base64: {exc}") from None


# ---------------------------------------------------------------- TreeBench
TREEBENCH_COLUMNS = ("index", "image", "question", "answer", "category", "target_instances")
TREEBENCH_OPTIONS = "multi-choice options"


def load_treebench_tsv(path: str | Path, *, name: str | None = None) -> list[BenchItem]:
    """TreeBench (``TreeBench.tsv`` of the Hugging Face dataset
    ``HaochenWang/TreeBench``, 405 questions): columns ``index``, ``image``
    (base64, or the ``index`` of the row holding it), ``question``, the
    options (``_treebench_choices``: the ``multi-choice options`` text, else
    the letter columns ``A``, ``B``, ...), ``answer`` (a letter),
    ``category`` (``Perception/OCR``, ...) and ``target_instances``: the
    boxes of the question's objects, a list of ``[x1, y1, x2, y2]`` in the
    image's pixels. The category is the part after ``/`` (OCR), the part
    before it (Perception, Reasoning) the item's ``meta["group"]``; answers
    are read as its evaluation reads them (``reading.treebench_choice``)."""
    path = Path(path)
    header, rows = _tsv_rows(path)
    missing = [c for c in TREEBENCH_COLUMNS if c not in header]
    if "A" not in header and TREEBENCH_OPTIONS not in header:
        missing.append(f"{TREEBENCH_OPTIONS} (or A, B, ...)")
    if missing:
        raise FocusInputError(
            f"{path}: missing column(s) {missing}; TreeBench.tsv has index, image, question, {TREEBENCH_OPTIONS} "
            "(or A, B, ...), answer, category, target_instances"
        )
    image_col = header.index("image")
    return [_treebench_item(path, record, image_offset, image_col, name or path.stem)
            for record, image_offset in _rows_with_images(path, rows)]


IMAGE_OPTION_LETTERS = "ABCDEF"
"""TreeBench's answers run from A to F; rows whose options are only in the
image (some OCR rows) get these letters as their options."""


def _treebench_item(path: Path, record: dict[str, str], offset: int, image_col: int, dataset: str) -> BenchItem:
    where = f"{path}: row {record['index']}"
    options, letters = _treebench_choices(record, where)
    answer = record["answer"].strip().upper()
    if answer not in letters:
        raise FocusInputError(f"{where}: field 'answer' is {record['answer']!r}, not one of {letters}")
    group, _, category = record["category"].strip().rpartition("/")
    return BenchItem(
        id=str(record["index"]), dataset=dataset, question=record["question"].strip(), options=options,
        correct_index=letters.index(answer), category=category or "all",
        image=ImageRef(path=path, tsv_offset=offset, tsv_column=image_col, tsv_row=str(record["index"])),
        target_boxes=_treebench_boxes(record["target_instances"], where),
        meta={"group": group, "options_in_image": options == _image_options(),
              **{k: v for k, v in record.items() if k not in ("image", "question", "answer", "target_instances")
                 and not (len(k) == 1 and k in string.ascii_uppercase)}},
        answer_reading="treebench",
    )


def _image_options() -> list[str]:
    return [f"the option marked {letter} in the image" for letter in IMAGE_OPTION_LETTERS]


def _treebench_choices(record: dict[str, str], where: str) -> tuple[list[str], list[str]]:
    """A row's options and their letters: from the ``multi-choice options``
    text, the benchmark's source, where it has one (the letter columns split
    from it have known slips, an option run into the one before); else from
    the letter columns; else, for a row that shows its options only in the
    image, the letters A-F."""
    text = record.get(TREEBENCH_OPTIONS, "").strip()
    letters = [c for c in string.ascii_uppercase if record.get(c, "").strip()]
    columns_ok = len(letters) >= 2 and letters == list(string.ascii_uppercase[: len(letters)])
    if text:
        try:
            options = _treebench_options(text, where)
            return options, list(string.ascii_uppercase[: len(options)])
        except FocusInputError:
            if not columns_ok:
                raise
    if columns_ok:
        return [record[c].strip() for c in letters], letters
    if letters:
        raise FocusInputError(f"{where}: options in columns {letters}; expected A, B, ... without gaps")
    return _image_options(), list(IMAGE_OPTION_LETTERS)


def _treebench_options(text: str, where: str) -> list[str]:
    """The options of a ``multi-choice options`` field: text marking each
    option with its letter (``A. red\nB. blue``, ``(A) red (B) blue``, or a
    bare ``A red`` opening a line), letters in order from A."""
    text = text.strip()
    marks: list[re.Match[str]] = []
    for letter in string.ascii_uppercase:  # each letter's mark after the one before: "Plan A." inside B is text
        # "A. red", "(A) red", "A) red", or a bare "A red" opening a line (some OCR rows)
        mark = re.compile(rf"(?:^|(?<=\s))(?:\({letter}\)|{letter}[.:)])\s*|(?m:^)[ \t]*{letter}[ \t]+").search(
            text, marks[-1].end() if marks else 0)
        if mark is None or (not marks and mark.start() != 0):
            break
        marks.append(mark)
    if len(marks) < 2:
        raise FocusInputError(
            f"{where}: field '{TREEBENCH_OPTIONS}' does not list options as 'A. ...', 'B. ...': {text[:80]!r}"
        )
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return [text[m.end():end].strip() for m, end in zip(marks, ends)]


def _treebench_boxes(text: str, where: str) -> list[Box]:
    """``target_instances``: a list of ``[x1, y1, x2, y2]`` pixel boxes."""
    try:  # a list of number lists: the same read as JSON as the evaluation's Python-literal reading
        boxes = json.loads(text.strip()) if text.strip() else []
    except ValueError:
        raise FocusInputError(f"{where}: field 'target_instances' is not a readable list: {text[:80]!r}") from None
    if not isinstance(boxes, (list, tuple)):
        raise FocusInputError(f"{where}: field 'target_instances' must be a list of [x1, y1, x2, y2] boxes")
    kept = []
    for box in boxes:
        if (not isinstance(box, (list, tuple)) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise FocusInputError(f"{where}: field 'target_instances' holds {box!r}; each box is [x1, y1, x2, y2]")
        x0, y0, x1, y1 = (round(v) for v in box)
        if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0:
            raise FocusInputError(f"{where}: field 'target_instances' holds {list(box)}, not a box [x1, y1, x2, y2] "
                                  "with x1 < x2, y1 < y2 in the image's pixels")
        kept.append((x0, y0, x1, y1))
    return kept


# --------------------------------------------------------- MME-RealWorld-Lite
MME_ANNOTATION_NAMES = ("MME-RealWorld-Lite.json", "MME_RealWorld_Lite.json", "MME-RealWorld.json", "MME_RealWorld.json")
"""The Lite release's file, and the full release's (beside its Chinese MME_RealWorld_CN.json)."""
MME_IMAGE_DIRS = (".", "imgs", "images", "data/imgs", "data")
_CHOICE_PREFIX = re.compile(r"^\s*\(?([A-Z])\)?[.:]?\s+")


def load_mme_realworld(
    path: str | Path, *, image_root: str | Path | None = None, name: str | None = None
) -> list[BenchItem]:
    """MME-RealWorld(-Lite): one JSON list of questions and an image folder.

    The official release (HF ``yifanzhang114/MME-RealWorld-Lite``, its
    ``data.zip``) has ``MME-RealWorld-Lite.json`` and the images under
    ``imgs/``. Each record: ``Question_id``, ``Image`` (a path relative to
    the image folder; only its file name in some copies), ``Text``,
    ``Answer choices`` (``"(A) ..."`` .. ``"(E) ..."``), ``Ground truth`` (a
    letter), ``Task`` (Perception / Reasoning), ``Subtask``, ``Category``.
    ``path`` is the JSON file or the folder holding it; images are looked
    for under ``image_root`` or, beside the JSON, in ``.``, ``imgs/``,
    ``images/``, ``data/imgs/``, ``data/`` (the path as given, then its file
    name). The category is the ``Task``; ``Subtask/Category`` the subtype.
    """
    annotation = _mme_annotation_file(Path(path))
    records = _read_json(annotation)
    if not isinstance(records, list):
        raise FocusInputError(f"{annotation}: expected a JSON list of questions, got {type(records).__name__}")
    if not records:
        raise FocusInputError(f"{annotation} holds no questions: the dataset is empty")
    roots = [Path(image_root)] if image_root else [annotation.parent / d for d in MME_IMAGE_DIRS]
    return [_mme_item(annotation, i, r, roots, name or annotation.stem) for i, r in enumerate(records)]


def _mme_annotation_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FocusInputError(f"{path} does not exist; give the MME-RealWorld JSON file or its folder")
    found = find_mme_annotation(path)
    if found is None:
        raise FocusInputError(
            f"{path} has no MME-RealWorld annotation file (nor its data/ folder); expected one of "
            f"{', '.join(MME_ANNOTATION_NAMES)}. Unpack data.zip of the download there, or give the JSON file"
        )
    return found


def find_mme_annotation(folder: Path) -> Path | None:
    """The English MME-RealWorld annotation in ``folder`` or its ``data/``
    (where the Lite download's data.zip unpacks), or None."""
    for where in (folder, folder / "data"):
        if not where.is_dir():
            continue
        for candidate in MME_ANNOTATION_NAMES:
            if (where / candidate).is_file():
                return where / candidate
        found = sorted(p for p in where.glob("*.json")
                       if "realworld" in p.name.lower().replace("-", "").replace("_", "")
                       and not p.stem.upper().endswith("_CN"))
        if len(found) == 1:
            return found[0]
    return None


def _mme_item(annotation: Path, position: int, record: Any, roots: Sequence[Path], dataset: str) -> BenchItem:
    where = f"{annotation}: question #{position}"
    if not isinstance(record, dict):
        raise FocusInputError(f"{where} is not a JSON object")
    missing = [k for k in ("Question_id", "Image", "Text", "Answer choices", "Ground truth") if k not in record]
    if missing:
        raise FocusInputError(f"{where} lacks {missing}; MME-RealWorld records have Question_id, Image, Text, "
                              "Answer choices, Ground truth")
    choices = record["Answer choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise FocusInputError(f"{where}: 'Answer choices' must be a list of at least two options")
    options = [_CHOICE_PREFIX.sub("", str(c), count=1).strip() for c in choices]
    letters = string.ascii_uppercase[: len(options)]
    truth = str(record["Ground truth"]).strip().strip("()").upper()
    if truth not in letters:
        raise FocusInputError(f"{where}: ground truth {record['Ground truth']!r} is not one of {list(letters)}")
    image = _find_mme_image(str(record["Image"]), roots, where)
    task = str(record.get("Task", "")).strip() or "all"
    subtype = "/".join(str(record[k]).strip() for k in ("Subtask", "Category") if record.get(k))
    meta = {k: v for k, v in record.items() if k not in ("Text", "Answer choices", "Ground truth")}
    return BenchItem(
        id=str(record["Question_id"]), dataset=dataset, question=str(record["Text"]).strip(), options=options,
        correct_index=letters.index(truth), category=task.capitalize(), image=ImageRef(path=image),
        subtype=subtype, meta=meta, answer_reading="mme",
    )


def _find_mme_image(relative: str, roots: Sequence[Path], where: str) -> Path:
    for root in roots:
        for candidate in (root / relative, root / Path(relative).name):
            if candidate.is_file():
                return candidate
    raise FocusInputError(
        f"{where}: image {relative!r} not found under {', '.join(str(r) for r in roots)}; "
        "unpack the images beside the JSON (imgs/) or give their folder with --image-root"
    )


# ------------------------------------------------------------------- detect
def _existing_dir(folder: str | Path) -> Path:
    root = Path(folder)
    if not root.exists():
        raise FocusInputError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise FocusInputError(f"{root} is not a folder")
    return root


def _single_tsv(folder: Path) -> Path:
    tsvs = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    if len(tsvs) != 1:
        raise FocusInputError(_tsv_choice_message(folder, tsvs))
    return tsvs[0]


def _tsv_choice_message(folder: Path, tsvs: Sequence[Path]) -> str:
    if not tsvs:
        return f"{folder} holds no .tsv file; give an HRBench or TreeBench TSV file as --data"
    names = ", ".join(t.name for t in tsvs)
    return (f"{folder} holds {len(tsvs)} TSV files ({names}); give one of them as --data, e.g. --data "
            f"{tsvs[0]} (HR-Bench scores 4K and 8K separately)")


def _tsv_kind(path: Path) -> str:
    """``treebench`` for a TSV with TreeBench's boxes column, else ``hrbench``."""
    with open(path, "rb") as fh:
        header = next(csv.reader([fh.readline().decode("utf-8-sig", "replace").rstrip("\r\n")], delimiter="\t"), [])
    return "treebench" if "target_instances" in header else "hrbench"


def detect_kind(path: str | Path) -> str:
    """``vstar`` for a folder of category folders with JSON + image pairs,
    ``hrbench`` for a ``.tsv`` file (``treebench`` when it has TreeBench's
    ``target_instances`` column), ``mme`` for a JSON file or a folder
    holding an MME-RealWorld annotation file."""
    path = Path(path)
    if not path.exists():
        raise FocusInputError(f"{path} does not exist; give a V*Bench folder, an HRBench or TreeBench .tsv "
                                 "or an MME-RealWorld JSON")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".tsv":
            return _tsv_kind(path)
        if suffix == ".json":
            return "mme"
        raise FocusInputError(f"{path}: unknown dataset file type {suffix!r}; expected .tsv (HRBench, "
                                 "TreeBench) or .json (MME)")
    # MME first: its download folder (data.zip, data/ with the JSON) also has a sub-folder holding a JSON
    if find_mme_annotation(path) is not None:
        return "mme"
    tsvs = sorted(path.glob("*.tsv"))
    if len(tsvs) > 1:
        raise FocusInputError(_tsv_choice_message(path, tsvs))
    if len(tsvs) == 1:
        return _tsv_kind(tsvs[0])
    if any(sub.is_dir() and any(sub.glob("*.json")) for sub in path.iterdir()):
        return "vstar"
    if (path / "data.zip").is_file():
        raise FocusInputError(f"{path} holds data.zip but no MME-RealWorld JSON: unpack data.zip there first")
    raise FocusInputError(
        f"cannot tell what dataset {path} holds: expected V*Bench category folders (NAME.jpg + NAME.json), "
        "an HRBench or TreeBench .tsv or an MME-RealWorld JSON; give --kind vstar, hrbench, mme or treebench"
    )


def load_dataset(
    path: str | Path,
    kind: str = "auto",
    *,
    option_seed: int | None = 0,
    limit: int | None = None,
    image_root: str | Path | None = None,
    categories: Sequence[str] | str | None = None,
) -> list[BenchItem]:
    """Load a benchmark as ``BenchItem``s (``kind``: auto, vstar, hrbench, mme, treebench).
    ``limit`` keeps the first N items (in the loader's stable order);
    ``categories`` picks V*Bench's category folders (``load_vstar``)."""
    if kind not in ("auto", *KINDS):
        raise FocusInputError(f"unknown dataset kind {kind!r}; use auto, {', '.join(KINDS)}")
    kind = detect_kind(path) if kind == "auto" else kind
    path = Path(path)
    if kind == "vstar":
        items = load_vstar(path, option_seed=option_seed, categories=categories)
    elif kind == "hrbench":
        items = load_hrbench_tsv(path if path.is_file() else _single_tsv(path))
    elif kind == "treebench":
        items = load_treebench_tsv(path if path.is_file() else _single_tsv(path))
    else:
        items = load_mme_realworld(path, image_root=image_root)
    if limit is not None:
        if limit < 1:
            raise FocusInputError(f"limit={limit}: keep at least one item")
        items = items[:limit]
    return items


__all__ = [
    "BenchItem", "ImageRef", "KINDS", "detect_kind", "load_dataset", "load_hrbench_tsv", "load_mme_realworld",
    "load_treebench_tsv", "load_vstar", "shuffled_options",
]
