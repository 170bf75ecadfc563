"""train: the conditional GAN on the train split -> checkpoint, metrics, loss curves, sample grid.

Resumes from its own checkpoint when that was trained on the same data with the same
settings (only train.steps may grow); otherwise starts afresh. Checkpoints are written
atomically every train.checkpoint_every steps, so a killed run loses at most that much.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from .progress import progress, write as progress_write

from gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, generate, pick_device

from .checkpoints import check_label_map, load_checkpoint, save_checkpoint
from .errors import GanaugError
from .images import load_tensor, to_uint8
from .io import atomic_file, write_json
from .manifest import label_map_of, read_manifest
from .params import Params
from .plots import class_grid, loss_curves

GRID_SEEDS = range(8)  # fixed latents: grids from successive runs compare like for like
_NOT_FINGERPRINTED = {"steps", "checkpoint_every", "resume", "device", "compile", "deployment"}


class TrainingError(GanaugError):
    pass


def train(params: Params, on_progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """on_progress(step, total, losses) is called about 500 times a run (a Prefect artifact uses it)."""
    cfg = params.train
    prepared = Path(params.paths.prepared)
    df = read_manifest(prepared, check_files=True)
    label_map = label_map_of(df)
    real = df[(df["split"] == "train") & (df["source"] == "real")]
    x = load_tensor([prepared / p for p in real["path"]], params.ingest.channels)
    y = torch.tensor([label_map[v] for v in real["label"]])
    device = pick_device(cfg.device)
    fingerprint = _fingerprint(real, params)

    trainer, history, last_run = _resume(params, fingerprint, label_map, device)
    if trainer is None:
        torch.manual_seed(cfg.seed)
        gan_cfg = GANConfig(img_size=x.shape[-1], channels=x.shape[1], n_classes=len(label_map),
                            z_dim=cfg.z_dim, width=cfg.width)
        hyper = TrainHyper(lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                           n_dis=cfg.n_dis, ema_decay=cfg.ema_decay, diffaug=tuple(cfg.diffaug),
                           lecam=cfg.lecam)
        trainer = GANTrainer(gan_cfg, hyper, device, compile=cfg.compile)
        history = []

    x = x.to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(device)

    def save(run_metrics: dict | None = None):
        trainer.refresh_ema_batchnorm()
        extra = {"fingerprint": fingerprint, "history": history, "train_params": cfg.model_dump(),
                 "last_run": run_metrics or last_run}  # how the checkpoint's last run went
        save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)

    # Real images are drawn class-balanced, matching the uniform labels of the fakes: with
    # the empirical mix D could learn "rare label => fake" instead of what the class looks like.
    class_sizes = torch.bincount(y.cpu(), minlength=len(label_map)).float()
    balance = 1.0 / class_sizes[y.cpu()]
    log_every = max(1, cfg.steps // 500)  # loss curves of ~500 points, whatever the length
    start_step, flops_per_step, t0 = trainer.step_count, None, time.perf_counter()
    bar = progress(range(start_step, cfg.steps), initial=start_step, total=cfg.steps,
               desc="train", unit="step")
    for step in bar:
        # Batch indices depend only on (seed, step): a resumed run sees the same batches.
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.multinomial(balance, cfg.batch_size, replacement=True, generator=g).to(device)
        try:
            if flops_per_step is None:
                with FlopCounterMode(display=False) as counter:
                    losses = trainer.step(x[idx], y[idx])
                flops_per_step = counter.get_total_flops()
            else:
                losses = trainer.step(x[idx], y[idx])
        except NonFiniteLoss as e:
            raise TrainingError(f"{e}. The last good checkpoint ({params.paths.model}, "
                                f"step {history[-1]['step'] if history else 0}) is kept.") from None
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, **{k: round(v, 5) for k, v in losses.items()}})
            if on_progress is not None:
                on_progress(step + 1, cfg.steps, losses)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(img_s=f"{(step + 1 - start_step) * cfg.batch_size / elapsed:.0f}",
                        D=f"{losses['loss_d']:.3f}", G=f"{losses['loss_g']:.3f}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save()
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0

    steps_run = trainer.step_count - start_step
    metrics = {
        "steps": cfg.steps,
        "steps_this_run": steps_run,
        "resumed_from": start_step,
        "train_images": len(real),
        "device": str(device),
        "seconds": round(elapsed, 2),
        "images_per_s": round(steps_run * cfg.batch_size / elapsed, 1) if steps_run else None,
        "gflops_per_step": round(flops_per_step / 1e9, 3) if flops_per_step else None,
        "achieved_gflops": round(flops_per_step * steps_run / elapsed / 1e9, 2) if flops_per_step else None,
        "final": history[-1] if history else None,
    }
    if steps_run:
        save(metrics)
    elif last_run:  # nothing to do: the checkpoint stays byte-identical; report its last run
        metrics = {**last_run, "steps_this_run": 0, "resumed_from": start_step}
    _write_reports(params, trainer, label_map, history, metrics)
    return metrics


def _fingerprint(real: pd.DataFrame, params: Params) -> str:
    """Same data + same settings (except how long and where) => a checkpoint may be resumed."""
    settings = {k: v for k, v in params.train.model_dump().items() if k not in _NOT_FINGERPRINTED}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for sid, label in sorted(zip(real["sample_id"], real["label"])):
        h.update(f"{sid}:{label};".encode())
    return h.hexdigest()[:16]


def _resume(params: Params, fingerprint: str, label_map, device):
    path = Path(params.paths.model)
    if not (params.train.resume and path.is_file()):
        return None, [], None
    state = load_checkpoint(path)
    if state.get("extra", {}).get("fingerprint") != fingerprint:
        progress_write(f"train: {path} was trained on other data or settings; starting afresh")
        return None, [], None
    check_label_map(state, label_map, str(path))
    if state["step"] > params.train.steps:
        progress_write(f"train: {path} is at step {state['step']} > train.steps; starting afresh")
        return None, [], None
    progress_write(f"train: resuming {path} from step {state['step']}")
    trainer = GANTrainer.from_state_dict(state, device, compile=params.train.compile)
    return trainer, list(state["extra"]["history"]), state["extra"].get("last_run")


def _write_reports(params: Params, trainer: GANTrainer, label_map, history, metrics):
    out = Path(params.paths.train_reports)
    write_json(out / "metrics.json", metrics)
    hist = pd.DataFrame(history)
    with atomic_file(out / "losses.csv") as tmp:
        hist.to_csv(tmp, index=False)
    if len(hist):
        loss_curves(hist, out / "losses.png")
    names = list(label_map)
    labels = [label_map[n] for n in names for _ in GRID_SEEDS]
    imgs = to_uint8(generate(trainer.G_ema, labels, [s for _ in names for s in GRID_SEEDS]))
    k = len(GRID_SEEDS)
    class_grid({n: imgs[i * k:(i + 1) * k] for i, n in enumerate(names)}, out / "samples.png",
               f"EMA generator, step {trainer.step_count}: one row per class")
