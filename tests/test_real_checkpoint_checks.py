"""benchmarks/real_checkpoint_checks.py end to end on the tiny planted LLaVA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from focus_engine.bench.world import WorldSpec, make_synthetic

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_checkpoint_checks.py"


@pytest.mark.slow  # eight benchmark runs
def test_the_checks_run_and_print_their_table(planted_small_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("real_checkpoint_checks", SCRIPT)
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    world = WorldSpec(shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560),
                      distractors=(5, 7), question_mix={"label": 1.0, "spatial": 1.0})
    make_synthetic(tmp_path / "set", seed=4, n=3, spec=world)
    out = tmp_path / "out"
    assert checks.main(["--model", str(planted_small_dir), "--data", str(tmp_path / "set"), "--limit", "3",
                        "--n-steps", "1", "--device", "cpu", "--precision", "fp32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "checks.json").read_text())
    checked = {row["check"] for row in saved["rows"]}
    assert checked == {"view", "layers", "extent", "normalisation"}
    for name in ("extent", "normalisation", "layers"):
        rows = [row for row in saved["rows"] if row["check"] == name]
        assert len(rows) == 2 and all(row["questions"] == 3 and row["accuracy"] is not None for row in rows)
    assert saved["yes_no"]["yes"] and saved["yes_no"]["no"] and saved["yes_no"]["dropped_shared"] == []
    assert "by image token (Fig. 7 literal)" in printed and "yes/no ids" in printed
