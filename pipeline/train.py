"""train: the conditional GAN on the train split -> checkpoint, metrics, loss curves, sample grid.

Resumes from its own checkpoint when that was trained on the same data with the same
settings (only train.steps may grow); otherwise starts afresh. Checkpoints are written
atomically every train.checkpoint_every steps, so a killed run loses at most that much.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from .progress import progress, write as progress_write

from ganaug.gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, generate, health, pick_device

from . import classifier
from .checkpoints import check_label_map, load_checkpoint, restore_trainer, save_checkpoint
from .errors import CheckpointError, GanaugError
from .images import load_tensor, to_uint8
from .files import atomic_file, write_json
from .manifest import label_map_of, read_manifest
from .params import Params
from .plots import class_grid, loss_curves

GRID_SEEDS = range(8)  # fixed latents: grids from successive runs compare like for like
_NOT_FINGERPRINTED = {"steps", "checkpoint_every", "resume", "device", "compile", "deployment", "minutes",
                      "patience", "fail_when_unhealthy"}


class TrainingError(GanaugError):
    pass


def train(params: Params, on_progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """on_progress(step, total, row) is called about 500 times a run (a Prefect artifact uses it);
    row holds the losses, the D margin and, where measured, the generator's diversity."""
    cfg = params.train
    prepared = Path(params.paths.prepared)
    df = read_manifest(prepared, check_files=True)
    label_map = label_map_of(df)
    names = list(label_map)
    real = df[(df["split"] == "train") & (df["source"] == "real")]
    x = load_tensor([prepared / p for p in real["path"]], params.ingest.channels)
    y = torch.tensor([label_map[v] for v in real["label"]])
    device = pick_device(cfg.device)
    fingerprint = _fingerprint(real, params)

    trainer, history, last_run = _resume(params, fingerprint, label_map, device)
    end = cfg.steps
    if trainer is not None and last_run and last_run.get("stopped") == "early":
        progress_write(f"train: {params.paths.model} stopped early at step {trainer.step_count} "
                       "(no improvement in validation); nothing to do")
        end = trainer.step_count
    if trainer is None:
        torch.manual_seed(cfg.seed)
        gan_cfg = GANConfig(img_size=x.shape[-1], channels=x.shape[1], n_classes=len(label_map),
                            z_dim=cfg.z_dim, width=cfg.width)
        hyper = TrainHyper(lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                           n_dis=cfg.n_dis, ema_decay=cfg.ema_decay, diffaug=tuple(cfg.diffaug),
                           lecam=cfg.lecam, mode_seeking=cfg.mode_seeking)
        trainer = GANTrainer(gan_cfg, hyper, device, compile=cfg.compile)
        history = []
    # The judge trains a seeded classifier, which moves torch's global RNG. A fresh run has always
    # drawn its steps after that; a resumed run must go on from the checkpoint's RNG state, so
    # there the judge's draws are undone (and resuming gives the same weights as not stopping).
    resumed = trainer.step_count > 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if resumed else nullcontext():
        judge = ValidationJudge(x, y, names, params) if trainer.step_count < end else None  # none when done
    real_spread = torch.tensor([health.spread(x[y == c]) for c in range(len(names))]).clamp(min=1e-6)

    x = x.to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(device)

    # Real images are drawn class-balanced, matching the uniform labels of the fakes: with
    # the empirical mix D could learn "rare label => fake" instead of what the class looks like.
    class_sizes = torch.bincount(y.cpu(), minlength=len(label_map)).float()
    balance = 1.0 / class_sizes[y.cpu()]
    log_every = max(1, cfg.steps // 500)      # loss curves of ~500 points, whatever the length
    health_every = max(10, cfg.steps // 50)   # the diversity probe: ~50 points a run, at most 1 step in 10
    start_step, flops_per_step, t0 = trainer.step_count, None, time.perf_counter()
    since_best = _evaluations_since_best(history)
    worst_diversity = float("nan")
    stopped = None
    bar = progress(range(start_step, end), initial=start_step, total=cfg.steps,
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
        done = step + 1
        over_budget = cfg.minutes is not None and time.perf_counter() - t0 > 60 * cfg.minutes
        evaluate_now = done % cfg.checkpoint_every == 0 or done == cfg.steps or over_budget
        if done % log_every == 0 or done % health_every == 0 or evaluate_now:
            row = {"step": done, **{k: round(v, 5) for k, v in losses.items()},
                   "margin": round(losses["d_real"] - losses["d_fake"], 5)}
            if done % health_every == 0 or evaluate_now:
                diversity = (health.class_spreads(trainer.G) / real_spread).tolist()
                worst_diversity = min(diversity)
                row |= {"diversity_min": round(min(diversity), 4),
                        "diversity_per_class": [round(v, 4) for v in diversity]}
            if evaluate_now:  # validation metric of G_ema: keep the best step, stop when stale
                trainer.refresh_ema_batchnorm()
                row["val_frechet"] = round(judge.score(trainer.G_ema), 4)
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
                        D=f"{losses['loss_d']:.3f}", margin=f"{losses['d_real'] - losses['d_fake']:.2f}",
                        diversity=f"{worst_diversity:.2f}",
                        refresh=False)
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
            _save(params, trainer, label_map, fingerprint, history, last_run)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0

    steps_run = trainer.step_count - start_step
    verdict = health.verdict(history, names)
    metrics = {
        "steps": cfg.steps,
        "steps_done": trainer.step_count,
        "steps_this_run": steps_run,
        "resumed_from": start_step,
        "stopped": stopped,
        "best_step": trainer.best["step"] if trainer.best else None,
        "best_val_frechet": round(trainer.best["metric"], 4) if trainer.best else None,
        "health": verdict,
        "train_images": len(real),
        "device": str(device),
        "seconds": round(elapsed, 2),
        "images_per_s": round(steps_run * cfg.batch_size / elapsed, 1) if steps_run else None,
        "gflops_per_step": round(flops_per_step / 1e9, 3) if flops_per_step else None,
        "achieved_gflops": round(flops_per_step * steps_run / elapsed / 1e9, 2) if flops_per_step else None,
        "final": {k: v for k, v in history[-1].items() if k != "diversity_per_class"} if history else None,
    }
    if steps_run:
        _save(params, trainer, label_map, fingerprint, history, metrics)
    elif last_run:  # nothing to do: the checkpoint stays byte-identical; report its last run
        metrics = {**last_run, "steps_this_run": 0, "resumed_from": start_step}
    _write_reports(params, trainer, label_map, history, metrics)
    if metrics["health"]["status"] == "unhealthy":
        for problem in metrics["health"]["problems"]:
            progress_write(f"train: WARNING: {problem}")
        if cfg.fail_when_unhealthy:
            raise TrainingError("training is unhealthy: " + "; ".join(metrics["health"]["problems"])
                                + f" (see {Path(params.paths.train_reports) / 'losses.png'}; the checkpoint "
                                "is kept; train.fail_when_unhealthy=false to go on regardless)")
    return metrics


def _save(params: Params, trainer: GANTrainer, label_map, fingerprint: str, history: list, run_metrics):
    trainer.refresh_ema_batchnorm()
    extra = {"fingerprint": fingerprint, "history": history, "train_params": params.train.model_dump(),
             "last_run": run_metrics}  # how the checkpoint's last run went
    save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)


def _evaluations_since_best(history: list[dict]) -> int:
    scores = [r["val_frechet"] for r in history if "val_frechet" in r]
    if not scores:
        return 0
    best = min(range(len(scores)), key=scores.__getitem__)
    return len(scores) - 1 - best


class ValidationJudge:
    """Mean per-class Fréchet distance between G_ema's images and the real train images, in the
    features of a small classifier trained on those real images (no Inception weights here).
    Lower is better; it picks the checkpoint generate uses and drives early stopping."""

    PER_CLASS = 32

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str], params: Params):
        self.model = classifier.fit_reference(x, y, len(names), params.evaluate, params.train.seed)
        _, feats = classifier.predict(self.model, x)
        self.real = [feats[(y == c).numpy()] for c in range(len(names))]
        self.n_classes = len(names)

    @torch.no_grad()
    def score(self, G) -> float:
        labels = [c for c in range(self.n_classes) for _ in range(self.PER_CLASS)]
        seeds = [20_000 + i for i in range(self.PER_CLASS)] * self.n_classes
        _, feats = classifier.predict(self.model, generate(G, labels, seeds).cpu())
        k = self.PER_CLASS
        return float(np.mean([classifier.frechet_distance(self.real[c], feats[c * k:(c + 1) * k])
                              for c in range(self.n_classes)]))


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
    extra = state.get("extra")
    if not isinstance(extra, dict) or extra.get("fingerprint") != fingerprint:
        progress_write(f"train: {path} was trained on other data or settings; starting afresh")
        return None, [], None
    check_label_map(state, label_map, str(path))
    if state["step"] > params.train.steps:
        progress_write(f"train: {path} is at step {state['step']} > train.steps; starting afresh")
        return None, [], None
    progress_write(f"train: resuming {path} from step {state['step']}")
    trainer = restore_trainer(state, device, path, compile=params.train.compile)
    history = extra.get("history")
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: checkpoint has no training history; retrain with train.resume=false")
    return trainer, history, extra.get("last_run")


def _write_reports(params: Params, trainer: GANTrainer, label_map, history, metrics):
    out = Path(params.paths.train_reports)
    write_json(out / "metrics.json", metrics)
    names = list(label_map)
    hist = pd.DataFrame(history).drop(columns=["diversity_per_class"], errors="ignore")
    with atomic_file(out / "losses.csv") as tmp:
        hist.to_csv(tmp, index=False)
    if len(hist):
        loss_curves(hist, out / "losses.png", metrics["health"])
    G, step = trainer.G_ema, trainer.step_count
    if trainer.best is not None:  # the sampler that generate will use
        G = copy.deepcopy(trainer.G_ema)
        G.load_state_dict(trainer.best["G_ema"])
        step = trainer.best["step"]
    labels = [label_map[n] for n in names for _ in GRID_SEEDS]
    imgs = to_uint8(generate(G, labels, [s for _ in names for s in GRID_SEEDS]))
    k = len(GRID_SEEDS)
    status = "" if metrics["health"]["status"] != "unhealthy" else " - UNHEALTHY, see losses.png"
    class_grid({n: imgs[i * k:(i + 1) * k] for i, n in enumerate(names)}, out / "samples.png",
               f"EMA generator, best step {step} of {trainer.step_count}: one row per class{status}")


def summarize(r: dict) -> str:
    h = r["health"]
    verdict = ("healthy" if h["status"] == "ok" else "UNHEALTHY: " + "; ".join(h["problems"]))
    if not r["steps_this_run"]:
        return f"already trained to {r['steps_done']} steps (checkpoint unchanged); {verdict}"
    stop = {"early": ", stopped early", "budget": ", stopped at train.minutes"}.get(r.get("stopped"), "")
    return (f"{r['steps_done']}/{r['steps']} steps ({r['steps_this_run']} this run{stop}) on {r['device']}, "
            f"{r['images_per_s']} img/s, {r['achieved_gflops']} GFLOPS; best step {r['best_step']} "
            f"(validation FD {r['best_val_frechet']}); D margin {h.get('margin_last_fifth')}; {verdict}")
