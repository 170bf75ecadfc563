"""Training in two processes with torchrun, DistributedDataParallel and the gloo backend (CPU)."""
from __future__ import annotations

import json

import pytest
import torch

from ganaug.pipeline.store.checkpoints import load_checkpoint
from ganaug.pipeline.ingest import ingest
from ganaug.pipeline.train import train
from tests.conftest import make_shapes, tiny_params


@pytest.mark.slow
def test_two_process_training_checkpoints_and_resumes_exactly(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 20, "square": 20, "cross": 8})
    ingest(tiny_params(tmp_path))

    def run(name: str, steps: int):
        p = tiny_params(tmp_path, train={"nproc": 2, "steps": steps, "checkpoint_every": 10, "batch_size": 8},
                        paths={"model": str(tmp_path / name / "gan.pt"), "train_reports": str(tmp_path / name)})
        return train(p), load_checkpoint(p.paths.model)

    metrics, whole = run("whole", 20)
    assert metrics["processes"] == 2 and metrics["steps_done"] == 20
    assert json.loads((tmp_path / "whole" / "metrics.json").read_text())["processes"] == 2
    assert (tmp_path / "whole" / "samples.png").is_file()  # rank 0's reports
    assert len(whole["extra"]["rng_ranks"]) == 2  # every process's random stream, for resuming

    # Stopped at 10 and resumed to 20: the same networks as 20 without stopping.
    run("halves", 10)
    resumed, halves = run("halves", 20)
    assert resumed["resumed_from"] == 10 and resumed["steps_this_run"] == 10
    for nets in ("G", "G_ema", "D"):
        for k, v in whole[nets].items():
            assert torch.equal(v, halves[nets][k]), f"{nets}.{k}"
