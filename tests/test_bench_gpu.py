"""bench/gpu.py, the one-call GPU check, runs its smoke version (the CPU path) end to end, so
that a lent GPU machine's few minutes are not spent finding a broken script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["info"]["smoke"] is True and figures["peak_bf16_tflops"] > 0
    assert [s["variant"] for s in figures["step"]] == ["eager", "fp32 eager"]  # compiled: not in the smoke run
    assert all(s["images_per_s"] > 0 and s["tflop_per_step"] > 0 and s["compile_error"] is None
               for s in figures["step"])
    assert figures["train_loop"]["ratio_to_bare"] > 0 and figures["train_loop"]["bare_step"] == "eager"
    preset = figures["preset_on_tail"]
    assert preset["steps_done"] > 0 and preset["health"] in ("ok", "unhealthy")
    assert len(preset["label_agreement_per_class"]) == 10  # conditioning measured for every class
    assert set(figures["evaluate_classifiers"]["median_s"]) == {"before", "one_by_one", "together"}
    assert list(figures["demo"]["seconds"]) == ["demo-data", "ingest", "train", "generate", "filter",
                                                 "evaluate", "append"]
    assert isinstance(figures["demo"]["gate"]["passed"], bool)
    assert "demo end to end on cpu" in done.stdout
