"""Reading checkpoints safely, and checking they belong to the data at hand."""
from __future__ import annotations

import hashlib
import json
import io
from pathlib import Path

import torch

from ganaug import gan

from ..plumbing.errors import CheckpointError, DataError
from .files import atomic_file


_OURS: set[Path] = set()  # checkpoints this process wrote or verified: known to be ganaug's, never loaded again


def save_checkpoint(state: dict, path: str | Path):
    # Serialized in memory first: torch's own file writer reports a full disk as a bare
    # RuntimeError, Python's as the OSError atomic_file turns into a clear message.
    path = Path(path)
    claim_checkpoint(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(buffer.getbuffer())
    _OURS.add(path.resolve())


def claim_checkpoint(path: Path):
    """A checkpoint replaces only a checkpoint: what is at paths.model must load as one of
    ganaug's (checked once a process: train checks before its first step), else nothing is written (paths.model=.gitignore with
    train.resume=false replaced the user's file before)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DataError(f"{path}: paths.model is {'a link' if path.is_symlink() else 'not a file'}; ganaug writes "
                        "its checkpoint only as a plain file of its own. Choose another paths.model")
    if not path.exists() or path.resolve() in _OURS:
        return
    try:
        gan.check_format(load_checkpoint(path))
    except (CheckpointError, ValueError) as e:
        raise DataError(f"{path}: a file is there that is not a ganaug checkpoint ({e}); ganaug replaces only "
                        "its own, so nothing was written. Move it away or choose another paths.model") from None
    _OURS.add(path.resolve())


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint; run `ganaug train` first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as e:  # torch raises several types for a damaged or foreign file
        first = (str(e).strip().splitlines() or [""])[0][:300]  # torch's messages run to many lines
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or "label_map" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a ganaug checkpoint")
    return state


def checkpoint_id(state: dict) -> str:
    """The provenance every synthetic image records: a hash of what generates and scores it
    (the sampler's networks, config and label map), not of the file, whose bytes also hold
    timings. Two identical trainings give one id, so their images keep one identity."""
    nets = state.get("best") or state
    h = hashlib.sha256(json.dumps({"config": state["config"], "label_map": state["label_map"]},
                                  sort_keys=True).encode())
    for name in ("G_ema", "D"):
        for key, tensor in sorted(nets[name].items()):
            h.update(f"{name}.{key}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_label_map(state: dict, label_map: dict[str, int], where: str):
    """A checkpoint trained on other classes must never be silently re-indexed."""
    saved = state["label_map"]
    if saved != label_map:
        only_ckpt = sorted(set(saved) - set(label_map))
        only_data = sorted(set(label_map) - set(saved))
        detail = (f"classes only in the checkpoint: {only_ckpt}; only in the data: {only_data}"
                  if only_ckpt or only_data else "same classes, different indices")
        raise CheckpointError(f"{where}: label map differs from the data's ({detail}); "
                              "retrain with `ganaug train` on this data")


# What torch and gan raise for a file that loads but does not fit the models: another
# checkpoint format, other widths (size mismatch), missing or extra tensors or keys.
_MISFIT = (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError)


def _misfit(where, e: Exception) -> CheckpointError:
    detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return CheckpointError(f"{where}: checkpoint does not fit ganaug's models ({detail}); "
                           "retrain with `ganaug train`, or point paths.model at a checkpoint ganaug wrote")


def restore_sampler(state: dict, device: torch.device, where) -> tuple[gan.Generator, gan.Discriminator]:
    try:
        return gan.load_sampler(state, device)
    except _MISFIT as e:
        raise _misfit(where, e) from None


def restore_trainer(state: dict, device: torch.device, where, compile: bool | str = False) -> gan.GANTrainer:
    try:
        return gan.GANTrainer.from_state_dict(state, device, compile=compile)
    except _MISFIT as e:
        raise _misfit(where, e) from None
