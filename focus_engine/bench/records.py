"""A benchmark run's records on disk, one JSON line per answered question.

``run.json`` says what the run is (model, settings, runs, question ids);
``records.jsonl`` gets each question's record the moment it is done (written
and flushed, so a killed process loses at most the question it was on). A
run sharded over processes writes one file per process
(``records.rank{r}-of-{n}.jsonl``). A resumed run reads them all, checks that
it is the same run, and skips what is already there; the report is always
made from the records files, so the same records give the same report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import FocusConfigError

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
RECORDS_GLOB = "records*.jsonl"


def shard_file(rank: int, world: int) -> str:
    """The records file of process ``rank`` of ``world`` (one process: records.jsonl)."""
    return RECORDS_FILE if world == 1 else f"records.rank{rank}-of-{world}.jsonl"


class RecordStore:
    """The records of one run in ``out_dir`` (``plan``: what run.json holds)."""

    def __init__(self, out_dir: str | os.PathLike[str], plan: Mapping[str, Any], *, resume: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.plan = json.loads(json.dumps(plan))  # as it reads back from disk
        self.path = self.out / shard_file(*shard)
        run_path = self.out / RUN_FILE
        if resume and run_path.is_file():
            saved = json.loads(run_path.read_text())
            differs = [key for key in self.plan if saved.get(key) != self.plan[key]]
            if differs:
                raise FocusConfigError(
                    f"--resume: the run in {self.out} differs from this one in {', '.join(differs)}; resume it with "
                    "the same data, model, methods and settings, or choose another --out"
                )
        elif any(p.stat().st_size > 0 for p in {self.path, self.out / RECORDS_FILE} if p.is_file()):
            raise FocusConfigError(
                f"{self.out} already holds the records of a run ({self.path.name}); add --resume to continue it, "
                "or choose another --out (nothing is overwritten)"
            )
        else:
            # every process of a sharded run writes the same plan: replaced whole, never half-written
            temporary = run_path.with_name(f"{RUN_FILE}.{shard[0]}.tmp")
            temporary.write_text(json.dumps(self.plan, indent=1) + "\n")
            os.replace(temporary, run_path)
            self.path.write_text("")
        if not self.path.is_file():
            self.path.write_text("")
        self._drop_torn_tail()
        self.done = {(r["run"], r["id"]) for path in sorted(self.out.glob(RECORDS_GLOB)) for r in read_records(path)}

    def _drop_torn_tail(self) -> None:
        """A process killed mid-write leaves a last line without its newline: cut it."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, run_label: str, record: Mapping[str, Any]) -> None:
        line = json.dumps({"run": run_label, **record}) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add((run_label, record["id"]))


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record line of a records file."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n") and line.strip():
                records.append(json.loads(line))
    return records


def records_by_run(records: Iterable[Mapping[str, Any]], run_labels: list[str],
                   item_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per run label, its records in question order (the last one of a
    question wins if a question appears twice)."""
    order = {item_id: index for index, item_id in enumerate(item_ids)}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if record["run"] in run_labels and record["id"] in order:
            latest[(record["run"], record["id"])] = {k: v for k, v in record.items() if k != "run"}
    return {label: sorted((r for (run, _), r in latest.items() if run == label), key=lambda r: order[r["id"]])
            for label in run_labels}
