"""Whether train may resume its checkpoint: trained on the same data with the same settings (only
how long and where may differ; train.steps may only grow)."""
from __future__ import annotations

import hashlib
import json
import numbers
from pathlib import Path

import pandas as pd
import torch

from ..store.checkpoints import check_label_map, load_checkpoint, restore_trainer
from ..plumbing.errors import CheckpointError, TrainingError
from ..plumbing.params import Params, compile_mode
from ..store.provenance import identity
from ..plumbing.progress import write as progress_write

NOT_FINGERPRINTED = {"steps", "checkpoint_every", "resume", "device", "compile", "deployment", "minutes",
                     "loader_workers", "patience", "fail_when_unhealthy"}


def fingerprint(real: pd.DataFrame, params: Params) -> str:
    """Same data + same settings (except how long and where) => a checkpoint may be resumed."""
    settings = {k: v for k, v in params.train.model_dump().items() if k not in NOT_FINGERPRINTED}
    if settings["ada_target"] is None:  # ADA off: its other knobs change nothing (nor older checkpoints' identity)
        settings = {k: v for k, v in settings.items() if not k.startswith("ada_")}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for sid, label in sorted(zip(real["sample_id"], real["label"])):
        h.update(f"{sid}:{label};".encode())
    return h.hexdigest()[:16]


def resume(params: Params, fingerprint: str, label_map, device):
    """(trainer, history, last run's metrics, one RNG state per process of a distributed run),
    or a fresh start's (None, [], None, None)."""
    path = Path(params.paths.model)
    if not (params.train.resume and path.is_file()):
        return None, [], None, None
    state = load_checkpoint(path)
    extra = state.get("extra")
    if not isinstance(extra, dict) or extra.get("fingerprint") != fingerprint:
        progress_write(f"train: {path} was trained on other data or settings; starting afresh")
        return None, [], None, None
    # The same images (ids) made into other pixels (another ingest.resize): not the same data.
    made_from = extra.get("made_from")
    trained_on = made_from.get("paths.prepared") if isinstance(made_from, dict) else None
    if trained_on is not None and trained_on != identity(params.paths.prepared):
        progress_write(f"train: {path} was trained on another {params.paths.prepared}; starting afresh")
        return None, [], None, None
    check_label_map(state, label_map, str(path))
    if state["step"] > params.train.steps:  # replacing a longer run silently would lose it
        raise TrainingError(f"{path} is trained to step {state['step']}, more than train.steps="
                            f"{params.train.steps}; nothing was changed. Set train.steps={state['step']} (or more) to "
                            "use it, or train.resume=false to train afresh and replace it")
    progress_write(f"train: resuming {path} from step {state['step']}")
    trainer = restore_trainer(state, device, path, compile=compile_mode(params.train.compile, device))
    history, last_run, rng_ranks = _checked_extra(extra, path)
    return trainer, history, last_run, rng_ranks


def _checked_extra(extra: dict, path: Path) -> tuple[list, dict | None, list | None]:
    """What train goes on from, read as untrusted: the history (one dict a log row, its step a
    whole number, its figures numbers or lists of numbers), the last run's metrics (a dict) and
    each process's RNG state (byte tensors)."""
    history, last_run, rng_ranks = extra.get("history"), extra.get("last_run"), extra.get("rng_ranks")

    def figure(v) -> bool:
        return (isinstance(v, numbers.Real) and not isinstance(v, bool)) or \
            (isinstance(v, list) and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v))

    rows_ok = isinstance(history, list) and all(
        isinstance(r, dict) and isinstance(r.get("step"), int) and all(figure(v) for v in r.values()) for r in history)
    if not rows_ok:
        raise CheckpointError(f"{path}: checkpoint has no readable training history (a list of rows of numbers); "
                              "retrain with train.resume=false")
    if last_run is not None and not isinstance(last_run, dict):
        raise CheckpointError(f"{path}: the checkpoint's last run is not a record; retrain with train.resume=false")
    if rng_ranks is not None and not (isinstance(rng_ranks, list) and all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 1 for t in rng_ranks)):
        raise CheckpointError(f"{path}: the checkpoint's random states are not byte tensors; retrain with "
                              "train.resume=false")
    return history, last_run, rng_ranks
