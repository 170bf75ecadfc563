"""train: the conditional GAN on the train split -> checkpoint, metrics, loss curves, sample grid.

Resumes from its own checkpoint when that was trained on the same data with the same
settings (only train.steps may grow); otherwise starts afresh. Checkpoints are written
atomically every train.checkpoint_every steps, so a killed run loses at most that much.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode
from .progress import progress, write as progress_write

from ganaug.gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, generate, health, pick_device

from . import classifier
from .checkpoints import check_label_map, load_checkpoint, restore_trainer, save_checkpoint
from .errors import CheckpointError, GanaugError
from .images import to_uint8
from .files import atomic_file, write_json
from .manifest import label_map_of, read_manifest
from .params import Params
from .pixels import open_pixels, to_float
from .plots import class_grid, loss_curves

GRID_SEEDS = range(8)  # fixed latents: grids from successive runs compare like for like
_NOT_FINGERPRINTED = {"steps", "checkpoint_every", "resume", "device", "compile", "deployment", "minutes",
                      "loader_workers",
                      "patience", "fail_when_unhealthy"}


class TrainingError(GanaugError):
    pass


def train(params: Params, on_progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """on_progress(step, total, row) is called about 500 times a run (a Prefect artifact uses it);
    row holds the losses, the D margin and, where measured, the generator's diversity."""
    cfg = params.train
    processes = _processes(cfg)
    if processes > 1 and "RANK" not in os.environ:
        return _launch(params, processes)
    rank, world = _join_process_group(cfg.device)
    prepared = Path(params.paths.prepared)
    df = read_manifest(prepared, check_files=True)
    label_map = label_map_of(df)
    names = list(label_map)
    is_real_train = ((df["split"] == "train") & (df["source"] == "real")).to_numpy()
    real, rows = df[is_real_train], np.flatnonzero(is_real_train)
    pixels = open_pixels(prepared, len(df))  # memory-mapped: batches are read, never the whole set
    y = torch.tensor([label_map[v] for v in real["label"]])
    # In memory, only a bounded, class-stratified reference sample: all of a small set.
    ref = reference_sample(y, pixels[0].nbytes * 4 if len(pixels) else 1, cfg.seed)
    x_ref, y_ref = to_float(pixels[rows[ref]]), y[ref]
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":  # one process per device
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    fingerprint = _fingerprint(real, params)

    trainer, history, last_run, rng_ranks = _resume(params, fingerprint, label_map, device)
    end = cfg.steps
    if trainer is not None and last_run and last_run.get("stopped") == "early":
        progress_write(f"train: {params.paths.model} stopped early at step {trainer.step_count} "
                       "(no improvement in validation); nothing to do")
        end = trainer.step_count
    if trainer is None:
        torch.manual_seed(cfg.seed)
        gan_cfg = GANConfig(img_size=x_ref.shape[-1], channels=x_ref.shape[1], n_classes=len(label_map),
                            z_dim=cfg.z_dim, width=cfg.width)
        hyper = TrainHyper(lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=(cfg.beta1, cfg.beta2),
                           n_dis=cfg.n_dis, ema_decay=cfg.ema_decay, diffaug=tuple(cfg.diffaug),
                           lecam=cfg.lecam, mode_seeking=cfg.mode_seeking, gsr=cfg.gsr,
                           transition=tuple(cfg.transition) if cfg.transition else None)
        trainer = GANTrainer(gan_cfg, hyper, device, compile=cfg.compile)
        history = []
    # The judge trains a seeded classifier, which moves torch's global RNG. A fresh run has always
    # drawn its steps after that; a resumed run must go on from the checkpoint's RNG state, so
    # there the judge's draws are undone (and resuming gives the same weights as not stopping).
    resumed = trainer.step_count > 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if resumed else nullcontext():
        judge = ValidationJudge(x_ref, y_ref, names, params, device) if trainer.step_count < end else None  # none when done
    real_spread = torch.tensor([health.spread(x_ref[y_ref == c]) for c in range(len(names))]).clamp(min=1e-6)
    del x_ref
    if world > 1:
        # Each process draws its own latents and augmentations: its own random stream,
        # continued from the checkpoint when resuming (every rank's state is saved).
        if resumed and rng_ranks and len(rng_ranks) == world:
            torch.set_rng_state(rng_ranks[rank])
        else:
            torch.manual_seed(cfg.seed * 1_000_003 + 7919 * (rank + 1))
        trainer.distribute(device)

    # Real images are drawn class-balanced, matching the uniform labels of the fakes: with
    # the empirical mix D could learn "rare label => fake" instead of what the class looks like.
    class_sizes = torch.bincount(y, minlength=len(label_map)).float()
    balance = 1.0 / class_sizes[y]
    log_every = max(1, cfg.steps // 500)      # loss curves of ~500 points, whatever the length
    health_every = max(10, cfg.steps // 50)   # the diversity probe: ~50 points a run, at most 1 step in 10
    start_step, flops_per_step, t0 = trainer.step_count, None, time.perf_counter()
    since_best = _evaluations_since_best(history)
    worst_diversity = float("nan")
    stopped = None
    bar = progress(range(start_step, end), initial=start_step, total=cfg.steps,
                   desc="train", unit="step", disable=rank != 0)
    loader = batch_loader(RealBatches(prepared, len(df), rows, y, balance, cfg.batch_size, cfg.seed, rank, world),
                          range(start_step, end), cfg.loader_workers, device)
    for step, (xb, yb) in zip(bar, loader):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        try:
            if flops_per_step is None:
                with FlopCounterMode(display=False) as counter:
                    losses = trainer.step(xb, yb)
                flops_per_step = counter.get_total_flops()
            else:
                losses = trainer.step(xb, yb)
        except NonFiniteLoss as e:
            raise TrainingError(f"{e}. The last good checkpoint ({params.paths.model}, "
                                f"step {history[-1]['step'] if history else 0}) is kept.") from None
        done = step + 1
        over_budget = cfg.minutes is not None and _from_rank0(time.perf_counter() - t0 > 60 * cfg.minutes, world)
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
                row["val_frechet"] = round(_from_rank0(judge.score(trainer.G_ema), world), 4)
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
        "processes": world,
        "images_per_s": round(steps_run * cfg.batch_size * world / elapsed, 1) if steps_run else None,
        "gflops_per_step": round(flops_per_step / 1e9, 3) if flops_per_step else None,
        "achieved_gflops": round(flops_per_step * world * steps_run / elapsed / 1e9, 2) if flops_per_step else None,
        "final": {k: v for k, v in history[-1].items() if k != "diversity_per_class"} if history else None,
    }
    if steps_run:
        _save(params, trainer, label_map, fingerprint, history, metrics)
    elif last_run:  # nothing to do: the checkpoint stays byte-identical; report its last run
        metrics = {**last_run, "steps_this_run": 0, "resumed_from": start_step}
    if rank == 0:
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
    """Every process takes part (the same random draws, every rank's RNG state); rank 0 writes."""
    trainer.refresh_ema_batchnorm()
    extra = {"fingerprint": fingerprint, "history": history, "train_params": params.train.model_dump(),
             "last_run": run_metrics}  # how the checkpoint's last run went
    if dist.is_initialized():
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, torch.get_rng_state())
        extra["rng_ranks"] = states
        if dist.get_rank() == 0:
            save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)
        dist.barrier()  # no rank reads or resumes a checkpoint rank 0 is still writing
    else:
        save_checkpoint(trainer.state_dict(label_map, extra), params.paths.model)


# -- several processes (torchrun) -------------------------------------------------------
def _processes(cfg) -> int:
    """train.nproc, or with null one process per visible GPU (1 on the CPU)."""
    if cfg.nproc is not None:
        return cfg.nproc
    return max(1, torch.cuda.device_count()) if pick_device(cfg.device).type == "cuda" else 1


def _launch(params: Params, n: int) -> dict:
    """Run this stage as `torchrun --nproc-per-node N`, one process per device (gloo on the
    CPU, NCCL on GPUs), and wait. Rank 0 writes the checkpoint and the reports; its
    metrics.json is the result. Progress callbacks (Prefect's artifact) stay in the workers."""
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "params.json"
        spec.write_text(json.dumps(params.model_dump(mode="json")))
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={n}", "-m", "ganaug.pipeline.train", str(spec)])
    if done.returncode:
        raise TrainingError(f"distributed training in {n} processes failed (exit status {done.returncode}); "
                            "the reason is in its output above; the last checkpoint is kept")
    return json.loads((Path(params.paths.train_reports) / "metrics.json").read_text())


def _join_process_group(device: str) -> tuple[int, int]:
    """(rank, world size): (0, 1) in one process; under torchrun, join its group (NCCL between
    GPUs, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if pick_device(device).type == "cuda" else "gloo")
    return dist.get_rank(), world


def _from_rank0(value, world: int):
    """Rank 0's value on every rank: decisions (validation score, budget) must be one."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _evaluations_since_best(history: list[dict]) -> int:
    scores = [r["val_frechet"] for r in history if "val_frechet" in r]
    if not scores:
        return 0
    best = min(range(len(scores)), key=scores.__getitem__)
    return len(scores) - 1 - best


REFERENCE_BYTES = 256 * 2**20  # float images the judge and the diversity probe keep in memory


def reference_sample(y: torch.Tensor, bytes_per_image: int, seed: int) -> np.ndarray:
    """Indices of a class-stratified sample of at most REFERENCE_BYTES of float images, in
    their original order; a set that fits is taken whole (so small runs are unchanged)."""
    classes = torch.unique(y).tolist()
    cap = max(64, REFERENCE_BYTES // bytes_per_image // max(1, len(classes)))
    keep = []
    rng = np.random.default_rng(seed)
    for c in classes:
        members = np.flatnonzero(y.numpy() == c)
        keep.append(members if len(members) <= cap else rng.choice(members, cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


class RealBatches(torch.utils.data.Dataset):
    """Step s's batch of real training images: class-balanced indices drawn from (seed, s)
    alone, so a resumed run, or any number of loader workers, sees the same batches; pixels
    read from the memory-mapped array (opened lazily in each worker process)."""

    def __init__(self, folder: Path, n_rows: int, rows: np.ndarray, labels: torch.Tensor,
                 weights: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.folder, self.n_rows, self.rows = folder, n_rows, rows
        self.labels, self.weights, self.batch_size, self.seed = labels, weights, batch_size, seed
        self.rank, self.world = rank, world
        self._pixels = None

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pixels is None:
            self._pixels = open_pixels(self.folder, self.n_rows)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        # The whole step's batch (world x batch_size, as one process with that batch would
        # draw it); this process takes its slice.
        idx = torch.multinomial(self.weights, self.batch_size * self.world, replacement=True, generator=g)
        idx = idx[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return to_float(self._pixels[self.rows[idx.numpy()]]), self.labels[idx]

    def __getstate__(self):  # workers reopen the memmap rather than receive a copy of it
        return {**self.__dict__, "_pixels": None}


def batch_loader(batches: RealBatches, steps: range, workers: int | None, device: torch.device):
    """The batches of `steps`, in order, prefetched by worker processes. workers=None: none on
    the CPU (it is busy training, and a batch from the page cache costs microseconds), four
    for a GPU. Its own seeded generator: building it must not move torch's global RNG."""
    if workers is None:
        workers = 0 if device.type == "cpu" else 4
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=steps, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=_one_thread,
        generator=torch.Generator().manual_seed(0))


def _one_thread(_):
    torch.set_num_threads(1)


class ValidationJudge:
    """Mean per-class Fréchet distance between G_ema's images and the real train images, in the
    features of a small classifier trained on those real images (no Inception weights here).
    Lower is better; it picks the checkpoint generate uses and drives early stopping."""

    PER_CLASS = 32

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str], params: Params, device: torch.device):
        self.model = classifier.fit_reference(x, y, len(names), params.evaluate, params.train.seed, device)
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
    check_label_map(state, label_map, str(path))
    if state["step"] > params.train.steps:
        progress_write(f"train: {path} is at step {state['step']} > train.steps; starting afresh")
        return None, [], None, None
    progress_write(f"train: resuming {path} from step {state['step']}")
    trainer = restore_trainer(state, device, path, compile=params.train.compile)
    history = extra.get("history")
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: checkpoint has no training history; retrain with train.resume=false")
    return trainer, history, extra.get("last_run"), extra.get("rng_ranks")


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


if __name__ == "__main__":  # one torchrun worker (see _launch)
    from ganaug.pipeline.errors import GanaugError as _Error
    from ganaug.pipeline.params import Params as _Params
    from ganaug.pipeline.train import train as _train

    code = 0
    try:
        _train(_Params.model_validate(json.loads(Path(sys.argv[1]).read_text())))
    except _Error as e:
        print(f"ganaug train (rank {os.environ.get('RANK')}): error: {e}", file=sys.stderr)
        code = 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.exit(code)
