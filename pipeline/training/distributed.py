"""train in several processes: torchrun launching, joining its process group, one value for all
ranks. One process per device (NCCL between GPUs, gloo on the CPU); rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from ganaug.gan import pick_device

from ..plumbing.errors import GanaugError, TrainingError
from ..plumbing.params import Params, device as params_device
from ..store.files import read_record

def processes(cfg) -> int:
    """train.nproc, or with null one process per visible GPU (1 on the CPU)."""
    if cfg.nproc is not None:
        return cfg.nproc
    return max(1, torch.cuda.device_count()) if params_device("train.device", cfg.device).type == "cuda" else 1


def launch(params: Params, n: int) -> dict:
    """Run this stage as `torchrun --nproc-per-node N`, one process per device (gloo on the
    CPU, NCCL on GPUs), and wait. Rank 0 writes the checkpoint and the reports; its
    metrics.json is the result. Progress callbacks (Prefect's artifact) stay in the workers."""
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "params.json"
        spec.write_text(json.dumps(params.model_dump(mode="json")))
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={n}", "-m", "ganaug.pipeline.training.distributed", str(spec)])
    if done.returncode:
        raise TrainingError(f"distributed training in {n} processes failed (exit status {done.returncode}); "
                            "the reason is in its output above; the last checkpoint is kept")
    result = Path(params.paths.train_reports) / "metrics.json"
    try:
        return read_record(result)  # rank 0's record, read as untrusted like every other
    except ValueError as e:
        raise TrainingError(f"{result}: not the record of the distributed run ({e}); the checkpoint is kept, "
                            "re-run `ganaug train`") from None


def join_process_group(device: str) -> tuple[int, int]:
    """(rank, world size): (0, 1) in one process; under torchrun, join its group (NCCL between
    GPUs, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if pick_device(device).type == "cuda" else "gloo")
    return dist.get_rank(), world


def from_rank0(value, world: int):
    """Rank 0's value on every rank: decisions (validation score, budget) must be one."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


if __name__ == "__main__":  # one torchrun worker (see launch)
    from ganaug.pipeline.train import train

    code = 0
    try:
        train(Params.model_validate(json.loads(Path(sys.argv[1]).read_text())))
    except GanaugError as e:
        print(f"ganaug train (rank {os.environ.get('RANK')}): error: {e}", file=sys.stderr)
        code = 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.exit(code)
