"""train: the conditional GAN on the train split -> checkpoint, metrics, loss curves, sample grid.

Resumes from its own checkpoint when that was trained on the same data with the same
settings (only train.steps may grow; pipeline/training/resume.py); otherwise starts afresh. Checkpoints
are written atomically every train.checkpoint_every steps, so a killed run loses at most that
much. Beside this stage: its data (train_data.py), its validation judge (validation.py) and
several processes under torchrun (distributed.py).
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ganaug.gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, health, sample_images

from .training import distributed, resume
from .store.checkpoints import claim_checkpoint, save_checkpoint
from .plumbing.errors import ParamsError, TrainingError
from .store.files import write_csv, write_json
from .store.images import to_uint8
from .store.manifest import label_map_of
from .plumbing.params import Params, compile_mode, device as params_device, loader_workers
from .store.pixels import nhwc_to_float, open_pixels, read_prepared
from .plumbing.plots import class_grid, loss_curves
from .plumbing.progress import progress, write as progress_write
from .store.provenance import identity
from .training.train_data import RealBatches, batch_loader, reference_sample, stream_seed
from .judges.validation import ValidationJudge

GRID_SEEDS = range(8)  # fixed latents: grids from successive runs compare like for like
__all__ = ["TrainingError", "describe_progress", "summarize", "train"]


@dataclass(frozen=True)
class _Data:
    """train's view of the prepared set: the real train rows, read a batch at a time from the
    memory-mapped pixel array, and a bounded class-stratified reference sample in memory."""
    prepared: Path
    manifest_rows: int      # rows of the whole manifest (the pixel array's length)
    real: pd.DataFrame      # the real train rows
    rows: np.ndarray        # their row numbers in the pixel array
    y: torch.Tensor         # their class indices
    label_map: dict
    x_ref: torch.Tensor | None  # the reference sample (all of a small set); None once the judge has it
    y_ref: torch.Tensor | None

    @property
    def names(self) -> list[str]:
        return list(self.label_map)


def train(params: Params, on_progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """on_progress(step, total, row) is called about 500 times a run (a Prefect artifact uses it);
    row holds the losses, the D margin and, where measured, the generator's diversity."""
    cfg = params.train
    if (processes := distributed.processes(cfg)) > 1 and "RANK" not in os.environ:
        return distributed.launch(params, processes)
    rank, world = distributed.join_process_group(cfg.device)

    # The data, and the device (one process per device).
    data = _data(params)
    device = params_device("train.device", cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)

    # The trainer: resumed, or fresh (and what is at paths.model must be a checkpoint to replace).
    claim_checkpoint(Path(params.paths.model))
    fingerprint = resume.fingerprint(data.real, params)
    trainer, history, last_run, rng_ranks = resume.resume(params, fingerprint, data.label_map, device)
    end = cfg.steps
    if trainer is not None and last_run and last_run.get("stopped") == "early":
        progress_write(f"train: {params.paths.model} stopped early at step {trainer.step_count} "
                       "(no improvement in validation); nothing to do")
        end = trainer.step_count
    if trainer is None:
        trainer, history = _fresh_trainer(cfg, data.x_ref, len(data.label_map), device), []
    judge = _judge(params, trainer, data, device, end)
    real_spread = _class_spreads(data)
    data = replace(data, x_ref=None, y_ref=None)  # its last use: the reference sample leaves memory
    if world > 1:
        _own_stream(cfg.seed, rank, world, rng_ranks if trainer.step_count else None)
        trainer.distribute(device)

    # The steps. Real images are drawn class-balanced, matching the uniform labels of the fakes:
    # with the empirical mix D could learn "rare label => fake" instead of what the class looks like.
    balance = 1.0 / torch.bincount(data.y, minlength=len(data.label_map)).float()[data.y]
    batches = RealBatches(data.prepared, data.manifest_rows, data.rows, data.y, balance, cfg.batch_size,
                          seed=cfg.seed, rank=rank, world=world)
    loader = batch_loader(batches, range(trainer.step_count, end), loader_workers(cfg.loader_workers, device), device)
    start_step = trainer.step_count
    stopped, flops_per_step, elapsed = _steps(
        params, trainer, loader,
        end=end,                      # the step to stop at (train.steps, or where an early stop was)
        history=history,              # the run's rows so far (a resumed run's included): appended to
        judge=judge,                  # validation: picks the best step, drives early stopping
        real_spread=real_spread,      # each class's real pixel spread: the diversity probe's yardstick
        save=lambda: _save(params, trainer, data.label_map, fingerprint, history, last_run),  # a checkpoint
        on_progress=on_progress, rank=rank, world=world, device=device)

    # The record: metrics, checkpoint, reports.
    metrics = _metrics(cfg, trainer, history, data, stopped=stopped, start_step=start_step,
                       flops_per_step=flops_per_step, elapsed=elapsed, device=device, world=world)
    if metrics["steps_this_run"]:
        _save(params, trainer, data.label_map, fingerprint, history, metrics)
    elif last_run:  # nothing to do: the checkpoint stays byte-identical; report its last run
        metrics = {**last_run, "steps_this_run": 0, "resumed_from": start_step}
    if rank == 0:
        _write_reports(params, trainer, data.label_map, history, metrics)
    _warn_unhealthy(params, metrics)
    return metrics


def _data(params: Params) -> _Data:
    prepared = Path(params.paths.prepared)
    df = read_prepared(params, check_files=True)
    label_map = label_map_of(df)
    is_real_train = ((df["split"] == "train") & (df["source"] == "real")).to_numpy()
    real, rows = df[is_real_train], np.flatnonzero(is_real_train)
    pixels = open_pixels(prepared, len(df))  # memory-mapped: batches are read, never the whole set
    y = torch.tensor([label_map[v] for v in real["label"]])
    ref = reference_sample(y, pixels[0].nbytes * 4 if len(pixels) else 1, params.train.seed)
    return _Data(prepared, len(df), real, rows, y, label_map, nhwc_to_float(pixels[rows[ref]]), y[ref])


def _judge(params: Params, trainer: GANTrainer, data: _Data, device: torch.device, end: int):
    """The validation judge (none when there is nothing left to train). It trains a seeded
    classifier, which moves torch's global RNG. A fresh run has always drawn its steps after
    that; a resumed run must go on from the checkpoint's RNG state, so there the judge's draws
    are undone (and resuming gives the same weights as not stopping)."""
    if trainer.step_count >= end:
        return None
    resumed = trainer.step_count > 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if resumed else nullcontext():
        return ValidationJudge(data.x_ref, data.y_ref, data.names, params, device)


def _own_stream(seed: int, rank: int, world: int, rng_ranks: list | None):
    """Each process draws its own latents and augmentations: its own random stream, continued
    from the checkpoint when resuming (every rank's state is saved)."""
    if rng_ranks and len(rng_ranks) == world:
        torch.set_rng_state(rng_ranks[rank])
    else:
        torch.manual_seed(stream_seed(seed, 7919 * (rank + 1)))


def _class_spreads(data: _Data) -> torch.Tensor:
    return torch.tensor([health.spread(data.x_ref[data.y_ref == c])
                         for c in range(len(data.label_map))]).clamp(min=1e-6)


def _metrics(cfg, trainer: GANTrainer, history: list, data: _Data, *, stopped, start_step: int,
             flops_per_step, elapsed: float, device: torch.device, world: int) -> dict:
    """What this run did: steps, why it stopped, the best step, health, speed."""
    if trainer.compile_error:
        progress_write(f"train: WARNING: torch.compile failed ({trainer.compile_error}); trained eager instead "
                       "(train.compile=false skips the attempt)")
    steps_run = trainer.step_count - start_step
    return {
        "steps": cfg.steps,
        "steps_done": trainer.step_count,
        "steps_this_run": steps_run,
        "resumed_from": start_step,
        "stopped": stopped,
        "best_step": trainer.best["step"] if trainer.best else None,
        "best_val_frechet": round(trainer.best["metric"], 4) if trainer.best else None,
        "health": health.verdict(history, data.names),
        "train_images": len(data.real),
        "device": str(device),
        "compile": trainer.compile if trainer.compile_error is None else f"failed, ran eager: {trainer.compile_error}",
        "seconds": round(elapsed, 2),
        "processes": world,
        "images_per_s": round(steps_run * cfg.batch_size * world / elapsed, 1) if steps_run else None,
        "gflops_per_step": round(flops_per_step / 1e9, 3) if flops_per_step else None,
        "achieved_gflops": round(flops_per_step * world * steps_run / elapsed / 1e9, 2) if flops_per_step else None,
        "final": {k: v for k, v in history[-1].items() if k not in ("diversity_per_class", "label_agreement")}
        if history else None,
    }


def _warn_unhealthy(params: Params, metrics: dict):
    if metrics["health"]["status"] != "unhealthy":
        return
    for problem in metrics["health"]["problems"]:
        progress_write(f"train: WARNING: {problem}")
    if params.train.fail_when_unhealthy:
        raise TrainingError("training is unhealthy: " + "; ".join(metrics["health"]["problems"])
                            + f" (see {Path(params.paths.train_reports) / 'losses.png'}; the checkpoint "
                            "is kept; train.fail_when_unhealthy=false to go on regardless)")


def _fresh_trainer(cfg, x_ref: torch.Tensor, n_classes: int, device: torch.device) -> GANTrainer:
    torch.manual_seed(cfg.seed)
    try:
        gan_cfg = GANConfig(img_size=x_ref.shape[-1], channels=x_ref.shape[1], n_classes=n_classes,
                            z_dim=cfg.z_dim, width=cfg.width, class_free_blocks=cfg.class_free_blocks)
    except ValueError as e:
        raise ParamsError(f"train.class_free_blocks={cfg.class_free_blocks}: {e}") from None
    hyper = TrainHyper(lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                       n_dis=cfg.n_dis, ema_decay=cfg.ema_decay, diffaug=tuple(cfg.diffaug),
                       lecam=cfg.lecam, mode_seeking=cfg.mode_seeking, gsr=cfg.gsr,
                       transition=tuple(cfg.transition) if cfg.transition else None,
                       ada_target=cfg.ada_target, ada_kimg=cfg.ada_kimg, ada_cap=cfg.ada_cap)
    return GANTrainer(gan_cfg, hyper, device, compile=compile_mode(cfg.compile, device))


def _steps(params: Params, trainer: GANTrainer, loader, *, end: int, history: list, judge, real_spread,
           save: Callable[[], None], on_progress, rank: int, world: int, device):
    """The training steps up to `end` (appending to history): losses logged ~500 times a run,
    the diversity probe ~50, validation and a checkpoint every train.checkpoint_every steps;
    stops early (train.patience) or at train.minutes. (why it stopped, FLOPs a step, seconds)."""
    cfg = params.train
    log_every = max(1, cfg.steps // 500)      # loss curves of ~500 points, whatever the length
    health_every = max(10, cfg.steps // 50)   # the diversity probe: ~50 points a run, at most 1 step in 10
    start_step, flops_per_step, t0 = trainer.step_count, None, time.perf_counter()
    since_best = _evaluations_since_best(history)
    worst_diversity = float("nan")
    stopped = None
    bar = progress(range(start_step, end), initial=start_step, total=cfg.steps,
                   desc="train", unit="step", disable=rank != 0)
    for step, (xb, yb) in zip(bar, loader):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        if flops_per_step is None:
            flops_per_step = trainer.flops_per_step(xb, yb)
        step_losses = trainer.step(xb, yb)
        done = step + 1
        over_budget = cfg.minutes is not None and distributed.from_rank0(time.perf_counter() - t0 > 60 * cfg.minutes, world)
        evaluate_now = done % cfg.checkpoint_every == 0 or done == cfg.steps or over_budget
        if done % log_every == 0 or done % health_every == 0 or evaluate_now:
            row = _log_row(trainer, step_losses, done, model_path=params.paths.model, history=history,
                           real_spread=real_spread if done % health_every == 0 or evaluate_now else None,
                           judge=judge if evaluate_now else None, world=world)
            if "diversity_min" in row:
                worst_diversity = row["diversity_min"]
            if "val_frechet" in row:  # keep the best step, stop when stale
                if trainer.best is None or row["val_frechet"] < trainer.best["metric"]:
                    trainer.mark_best(row["val_frechet"])
                    since_best = 0
                else:
                    since_best += 1
            history.append(row)
            if on_progress is not None:
                on_progress(done, cfg.steps, row)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(img_s=f"{(done - start_step) * cfg.batch_size / elapsed:.0f}",
                            D=f"{row['loss_d']:.3f}", margin=f"{row['margin']:.2f}",
                            diversity=f"{worst_diversity:.2f}", refresh=False)
        if cfg.patience is not None and since_best >= cfg.patience:
            stopped = "early"
        elif over_budget:
            stopped = "budget"
        if stopped:
            progress_write(f"train: stopping at step {done}: " + (
                f"validation Fréchet distance has not improved in {cfg.patience} evaluations "
                f"(best {trainer.best['metric']:.3f} at step {trainer.best['step']})" if stopped == "early"
                else f"train.minutes={cfg.minutes} reached; a re-run resumes from here"))
            break
        if evaluate_now and done < cfg.steps:
            save()
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return stopped, flops_per_step, elapsed


def _log_row(trainer: GANTrainer, step_losses, done: int, *, model_path, history: list, real_spread, judge,
             world: int) -> dict:
    """One row of the run's history: the losses and D margin; the diversity probe when
    real_spread is given; the validation metric of G_ema when judge is. The only places the loop
    waits for the device: a NaN since the last row stops training here, the checkpoint kept."""
    try:
        trainer.check_finite()
    except NonFiniteLoss as e:
        raise TrainingError(f"{e}. The last good checkpoint ({model_path}, "
                            f"step {history[-1]['step'] if history else 0}) is kept.") from None
    losses = trainer.losses(step_losses)
    row = {"step": done, **{k: round(v, 5) for k, v in losses.items()},
           "margin": round(losses["d_real"] - losses["d_fake"], 5)}
    if real_spread is not None:
        diversity = (health.class_spreads(trainer.G) / real_spread).tolist()
        row |= {"diversity_min": round(min(diversity), 4), "diversity_per_class": [round(v, 4) for v in diversity]}
    if judge is not None:
        trainer.refresh_ema_batchnorm()
        frechet, agreement = distributed.from_rank0(judge.score(trainer.G_ema), world)
        row |= {"val_frechet": round(frechet, 4), "label_agreement": [round(a, 4) for a in agreement]}
    return row


def _save(params: Params, trainer: GANTrainer, label_map, fingerprint: str, history: list, run_metrics):
    """Every process takes part (the same random draws, every rank's RNG state); rank 0 writes."""
    trainer.refresh_ema_batchnorm()
    extra = {"fingerprint": fingerprint, "history": history, "train_params": params.train.model_dump(),
             "last_run": run_metrics,  # how the checkpoint's last run went
             "made_from": {"paths.prepared": identity(params.paths.prepared)}}
    if dist.is_initialized():
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, torch.get_rng_state())
        extra["rng_ranks"] = states
        if dist.get_rank() == 0:
            save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)
        dist.barrier()  # no rank reads or resumes a checkpoint rank 0 is still writing
    else:
        save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)


def _evaluations_since_best(history: list[dict]) -> int:
    scores = [r["val_frechet"] for r in history if "val_frechet" in r]
    if not scores:
        return 0
    best = min(range(len(scores)), key=scores.__getitem__)
    return len(scores) - 1 - best


def _write_reports(params: Params, trainer: GANTrainer, label_map, history, metrics):
    out = Path(params.paths.train_reports)
    write_json(out / "metrics.json", metrics)
    names = list(label_map)
    hist = pd.DataFrame(history).drop(columns=["diversity_per_class", "label_agreement"], errors="ignore")
    write_csv(hist, out / "losses.csv")
    if len(hist):
        loss_curves(hist, out / "losses.png", metrics["health"])
    G, step = trainer.G_ema, trainer.step_count
    if trainer.best is not None:  # the sampler that generate will use
        G = copy.deepcopy(trainer.G_ema)
        G.load_state_dict(trainer.best["G_ema"])
        step = trainer.best["step"]
    labels = [label_map[n] for n in names for _ in GRID_SEEDS]
    imgs = to_uint8(sample_images(G, labels, [s for _ in names for s in GRID_SEEDS]))
    k = len(GRID_SEEDS)
    problems = metrics["health"].get("problems") or []
    status = "" if metrics["health"]["status"] != "unhealthy" else \
        f" - UNHEALTHY ({'; '.join(p.split(':')[0] for p in problems)}), see losses.png"
    class_grid({n: imgs[i * k:(i + 1) * k] for i, n in enumerate(names)}, out / "samples.png",
               f"EMA generator, best step {step} of {trainer.step_count}: one row per class{status}")


def describe_progress(step: int, total: int, row: dict) -> str:
    """A progress line (the Prefect artifact's): row holds the latest value of each figure."""
    line = (f"step {step}/{total}: D {row['loss_d']:.3f}, G {row['loss_g']:.3f}, "
            f"D margin {row['margin']:.3f} (dead below {health.DEAD_MARGIN}), "
            f"worst-class diversity {row.get('diversity_min', float('nan')):.2f} of real "
            f"(collapse below {health.COLLAPSED_SPREAD})")
    if row.get("label_agreement"):
        line += f", label agreement {sum(row['label_agreement']) / len(row['label_agreement']):.0%}"
    return line


def summarize(r: dict) -> str:
    h = r["health"]
    verdict = ("healthy" if h["status"] == "ok" else "UNHEALTHY: " + "; ".join(h["problems"]))
    if not r["steps_this_run"]:
        return f"already trained to {r['steps_done']} steps (checkpoint unchanged); {verdict}"
    stop = {"early": ", stopped early", "budget": ", stopped at train.minutes"}.get(r.get("stopped"), "")
    return (f"{r['steps_done']}/{r['steps']} steps ({r['steps_this_run']} this run{stop}) on {r['device']}, "
            f"{r['images_per_s']} img/s, {r['achieved_gflops']} GFLOPS; best step {r['best_step']} "
            f"(validation FD {r['best_val_frechet']}); D margin {h.get('margin_last_fifth')}; {verdict}")


