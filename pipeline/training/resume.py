"""Whether train may resume its checkpoint: trained on the same data with the same settings (only
how long and where may differ; train.steps may only grow)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

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
    history = extra.get("history")
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: checkpoint has no training history; retrain with train.resume=false")
    return trainer, history, extra.get("last_run"), extra.get("rng_ranks")
