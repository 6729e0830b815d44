"""The matplotlib accuracy-vs-forward-passes chart (focus_engine.bench.plot)."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest

from focus_engine.bench.plot import PLOT_STEM, plot_accuracy


def _run(method: str, n_steps: int | None, accuracy: float | None, passes: float | None) -> SimpleNamespace:
    return SimpleNamespace(method=method, n_steps=n_steps,
                           metrics={"accuracy": accuracy, "forward_passes": passes})


def _fake_result() -> SimpleNamespace:
    runs = [
        _run("vanilla", None, 0.42, 1.0),
        _run("focus", 4, 0.55, 3.0), _run("focus", 2, 0.50, 2.0), _run("focus", 8, 0.61, 5.5),
        _run("vicrop", 2, 0.47, 2.5), _run("vicrop", 4, 0.52, 4.0),
        _run("zoomeye", None, 0.58, 12.3),
        _run("broken_method", None, None, 3.0),  # no accuracy: left out of the chart
    ]
    return SimpleNamespace(runs=runs, datasets=["vstar", "hrbench"], n_items=24)


def test_plot_writes_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    paths = plot_accuracy(_fake_result(), tmp_path / "out")
    assert [p.name for p in paths] == [f"{PLOT_STEM}.png", f"{PLOT_STEM}.svg"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)

    with Image.open(paths[0]) as image:
        image.load()
        grey = image.convert("L")
        lo, hi = grey.getextrema()
        assert image.width > 300 and image.height > 200
        assert hi - lo > 100  # not blank: dark lines and text on white
        assert sum(1 for v in grey.getdata() if v < 128) > 500

    svg = paths[1].read_text()
    for name in ("vanilla", "focus", "vicrop", "zoomeye"):
        assert f">{name}<" in svg
    assert "broken_method" not in svg
    assert "n=8" in svg and "24 questions" in svg and "vstar, hrbench" in svg


def test_a_second_panel_draws_the_region_miou_where_runs_have_regions(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    result = _fake_result()
    width_without = Image.open(plot_accuracy(result, tmp_path / "one")[0]).width
    for run in result.runs:
        run.metrics["region_miou"] = None if run.method == "vanilla" else 0.3  # the plain answer has no regions
    paths = plot_accuracy(result, tmp_path / "two")
    assert Image.open(paths[0]).width > width_without * 1.4
    svg = paths[1].read_text()
    assert "region mIoU" in svg and "where it looked" in svg
    assert svg.count(">vanilla<") == 1  # one legend for both panels


def test_plot_without_matplotlib_warns_and_skips(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.WARNING, logger="focus_engine.bench"):
        assert plot_accuracy(_fake_result(), tmp_path) == []
    warnings = [r for r in caplog.records if r.name == "focus_engine.bench" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped" in warnings[0].getMessage() and "comfyui-focus[bench]" in warnings[0].getMessage()
    assert list(tmp_path.iterdir()) == []
