"""Nothing lost: each record on disk as soon as it is made, resuming a cut-off
run, the report made from the records, failures recorded and passed over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from focus_engine.bench.datasets import load_dataset
from focus_engine.bench.records import RECORDS_FILE, RUN_FILE, RecordStore, read_records, records_by_run
from focus_engine.bench.runner import load_result, run_benchmark
from focus_engine.bench.world import WorldSpec, make_synthetic
from focus_engine.config import FocusConfig
from focus_engine.errors import FocusConfigError

TINY = WorldSpec(
    shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560), distractors=(5, 7),
    question_mix={"label": 1.0, "spatial": 1.0},
)
FAST = FocusConfig(answer_max_new_tokens=2, max_overrun=1)
PLAN = {"model": "m", "settings": {"a": 1}, "items": ["q1", "q2"], "runs": [{"label": "vanilla"}]}


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    make_synthetic(folder, seed=5, n=3, spec=TINY)
    return load_dataset(folder)


def without_timing(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_a_folder_with_records_is_not_overwritten(tmp_path):
    store = RecordStore(tmp_path, PLAN)
    store.append("vanilla", {"id": "q1", "correct": True})
    with pytest.raises(FocusConfigError, match="add --resume"):
        RecordStore(tmp_path, PLAN)
    with pytest.raises(FocusConfigError, match="differs from this one in settings"):
        RecordStore(tmp_path, {**PLAN, "settings": {"a": 2}}, resume=True)
    again = RecordStore(tmp_path, PLAN, resume=True)
    assert again.done == {("vanilla", "q1")}


def test_a_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    store = RecordStore(tmp_path, PLAN)
    store.append("vanilla", {"id": "q1", "correct": True})
    with open(tmp_path / RECORDS_FILE, "a") as handle:
        handle.write('{"run": "vanilla", "id": "q2", "corr')  # the process died here
    assert [r["id"] for r in read_records(tmp_path / RECORDS_FILE)] == ["q1"]
    resumed = RecordStore(tmp_path, PLAN, resume=True)
    assert resumed.done == {("vanilla", "q1")}
    resumed.append("vanilla", {"id": "q2", "correct": False})
    assert [r["id"] for r in read_records(tmp_path / RECORDS_FILE)] == ["q1", "q2"]


def test_records_come_back_in_question_order():
    records = [{"run": "a", "id": "q2", "x": 1}, {"run": "a", "id": "q1", "x": 2}, {"run": "b", "id": "q1", "x": 3},
               {"run": "a", "id": "q2", "x": 4}, {"run": "a", "id": "other", "x": 5}]
    grouped = records_by_run(records, ["a", "b"], ["q1", "q2"])
    assert grouped == {"a": [{"id": "q1", "x": 2}, {"id": "q2", "x": 4}], "b": [{"id": "q1", "x": 3}]}


def test_records_are_written_as_made_and_the_report_comes_from_them(planted_small, items, tmp_path):
    seen = []

    def progress(done, total, message):  # each record is on disk before the next question starts
        if (tmp_path / RECORDS_FILE).is_file():
            seen.append(len(read_records(tmp_path / RECORDS_FILE)))

    result = run_benchmark(planted_small, items, "vanilla,focus", FAST, [1], progress=progress, out_dir=tmp_path,
                           use_gt_targets=True)
    assert seen[:-1] == list(range(len(items) * 2))
    lines = read_records(tmp_path / RECORDS_FILE)
    assert len(lines) == 6 and {r["run"] for r in lines} == {"vanilla", "focus@1"}
    assert json.loads((tmp_path / RUN_FILE).read_text())["items"] == [i.id for i in items]
    reloaded = load_result(tmp_path)
    assert [r.metrics for r in reloaded.runs] == [r.metrics for r in result.runs]
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(reloaded.to_json()))
    # resuming a finished run asks the model nothing and reports the same
    calls = planted_small.counter.generate_calls
    again = run_benchmark(planted_small, items, "vanilla,focus", FAST, [1], out_dir=tmp_path, use_gt_targets=True,
                          resume=True)
    assert planted_small.counter.generate_calls == calls
    assert [r.records for r in again.runs] == [r.records for r in result.runs]


def test_out_of_memory_on_one_question_is_recorded_and_the_run_goes_on(planted_small, items, tmp_path, monkeypatch):
    from focus_engine.methods.focus import FocusPipeline

    real_run = FocusPipeline.run
    calls = []

    def run_or_oom(self, image, question, **kwargs):
        calls.append(question)
        if len(calls) == 2:  # the second question
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_run(self, image, question, **kwargs)

    monkeypatch.setattr(FocusPipeline, "run", run_or_oom)
    result = run_benchmark(planted_small, items, "focus", FAST, [1], out_dir=tmp_path, use_gt_targets=True)
    records = result.runs[0].records
    assert [("error" in r) for r in records] == [False, True, False]
    assert records[1]["error"].startswith("out of memory: CUDA out of memory") and records[1]["correct"] is False


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    """A real SIGKILL to a `focus bench run` process part-way, then --resume:
    the records equal those of a run that was never interrupted (timings aside)."""
    data = tmp_path / "data"
    make_synthetic(data, seed=7, n=6, spec=WorldSpec())
    command = [sys.executable, "-m", "focus_engine.cli", "bench", "run", "--data", str(data), "--methods",
               "vanilla,focus", "--n-steps", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = tmp_path / "whole"
    subprocess.run([*command, "--out", str(whole)], check=True, capture_output=True, env=env, timeout=600)

    cut = tmp_path / "cut"
    process = subprocess.Popen([*command, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        path = cut / RECORDS_FILE
        if path.is_file() and len(read_records(path)) >= 5:
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = len(read_records(cut / RECORDS_FILE))
    assert 5 <= kept < 12  # cut part-way
    finished = subprocess.run([*command, "--out", str(cut), "--resume"], capture_output=True, text=True, env=env,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    plan = json.loads((whole / RUN_FILE).read_text())
    labels = [r["label"] for r in plan["runs"]]
    expected = records_by_run(read_records(whole / RECORDS_FILE), labels, plan["items"])
    resumed = records_by_run(read_records(cut / RECORDS_FILE), labels, plan["items"])
    assert len(read_records(cut / RECORDS_FILE)) == 12  # nothing answered twice
    for label in labels:
        assert without_timing(resumed[label]) == without_timing(expected[label])
    whole_report = json.loads((whole / "results.json").read_text())
    cut_report = json.loads((cut / "results.json").read_text())
    for a, b in zip(whole_report["runs"], cut_report["runs"]):
        assert {k: v for k, v in a["metrics"].items() if k != "seconds"} == \
            {k: v for k, v in b["metrics"].items() if k != "seconds"}


@pytest.mark.slow
def test_a_run_sharded_over_two_processes_equals_one_process(tmp_path):
    """`accelerate launch` with two processes (gloo on the CPU): each answers
    every second question into its own records file, the main one reports,
    and the merged records equal a single process's (timings aside)."""
    data = tmp_path / "data"
    make_synthetic(data, seed=9, n=5, spec=WorldSpec())
    run = ["-m", "focus_engine.cli", "bench", "run", "--data", str(data), "--methods", "vanilla,focus",
           "--n-steps", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    single = tmp_path / "single"
    subprocess.run([sys.executable, *run, "--out", str(single)], check=True, capture_output=True, env=env,
                   timeout=600)
    sharded = tmp_path / "sharded"
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", *run, "--out", str(sharded)],
        capture_output=True, text=True, env=env, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    shards = sorted(p.name for p in sharded.glob("records*.jsonl"))
    assert shards == ["records.rank0-of-2.jsonl", "records.rank1-of-2.jsonl"]
    per_shard = [read_records(sharded / name) for name in shards]
    assert [len(records) for records in per_shard] == [6, 4]  # questions 0, 2, 4 and 1, 3, two runs each
    assert launched.stdout.count("results.json (records:") == 1  # one report, from the main process
    plan = json.loads((single / RUN_FILE).read_text())
    labels = [r["label"] for r in plan["runs"]]
    one = records_by_run(read_records(single / RECORDS_FILE), labels, plan["items"])
    merged = records_by_run([r for records in per_shard for r in records], labels, plan["items"])
    for label in labels:
        assert without_timing(merged[label]) == without_timing(one[label])
    single_metrics = [r["metrics"] for r in json.loads((single / "results.json").read_text())["runs"]]
    sharded_metrics = [r["metrics"] for r in json.loads((sharded / "results.json").read_text())["runs"]]
    for a, b in zip(single_metrics, sharded_metrics):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_an_interrupted_run_says_how_to_go_on_and_its_report_counts_the_answers(planted_small, tmp_path, monkeypatch,
                                                                                  capsys):
    """Issue 33, item 6: Ctrl-C in `focus bench run` ends on a line of its
    own and names --resume; the report of the partial run says how many of
    the questions each run answered."""
    from focus_engine.bench import runner
    from focus_engine.cli import main

    answered = []
    real = runner.answer_item

    def answer_then_stop(*args, **kwargs):  # the second question is where the user presses Ctrl-C
        if len(answered) == 1:
            raise KeyboardInterrupt
        answered.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "answer_item", answer_then_stop)
    monkeypatch.setattr("focus_engine.cli_bench.load_model", lambda *a, **k: planted_small)
    out, data = tmp_path / "out", tmp_path / "world"
    make_synthetic(data, seed=5, n=3, spec=TINY)
    code = main(["bench", "run", "--data", str(data), "--methods", "vanilla", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    assert "\nfocus: interrupted; the answers so far are kept in" in err and "--resume" in err
    assert main(["bench", "report", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "1/3" in table.splitlines()[1]  # vanilla answered one question of three
