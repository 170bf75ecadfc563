"""Scale: a made-up set of 100,000 small PNGs through ingest, train, generate and evaluate.

    python -m bench.scale [--n 100000] [--steps 300] [--stages ingest,train,...]

Prints, each with its baseline measured in the same run:
- ingest images/s with worker processes (ingest.workers: one per core) against a bare PIL
  decode loop over the same files in as many processes (decode only: no hashing, resizing,
  pixel array or manifest; aim >= 0.8x), against the same loop in one process and ingest with
  one worker, next to the rate this disk creates small files at (ingest writes none per image);
- `ganaug train` images/s, streaming batches from the memory-mapped pixel array, against a
  bare GANTrainer.step loop over an in-memory float tensor of the same images (no data
  pipeline, probes, validation or checkpoints); aim >= 0.95x;
- the peak resident memory of every stage (GNU time's maximum RSS of the stage's process;
  ingest's worker processes are measured on their own, each smaller); aim <= 2 GB each;
  filter twice: with its guards off (all of generate's candidates accepted, the set evaluate
  then measures) and on (one round: near copies, the judge, dedupe).
The data: four shape classes of 60,000 / 30,000 / 8,000 / 2,000 images (24 px grey, drawn
with seed 0), ingested at 16 px; generate fills every class up to the largest
(sampling_strategy "not majority", about 84,000 images, 1.5x candidates).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

SHARES = {"circle": 0.6, "square": 0.3, "cross": 0.08, "ring": 0.02}


def make_data(root: Path, n: int) -> list[Path]:
    """Shapes of random place and size with per-pixel noise (so no two files are equal)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    files = []
    for label, share in SHARES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(max(10, int(n * share))):
            cx, cy, r = rng.integers(7, 17), rng.integers(7, 17), rng.integers(4, 7)
            d = np.hypot(xx - cx, yy - cy)
            mask = {"circle": d < r, "square": (abs(xx - cx) < r) & (abs(yy - cy) < r),
                    "cross": ((abs(xx - cx) < 2) & (abs(yy - cy) < r)) | ((abs(yy - cy) < 2) & (abs(xx - cx) < r)),
                    "ring": (d < r) & (d > r - 2)}[label]
            img = np.clip(mask * 200.0 + rng.normal(20, 12, (24, 24)), 0, 255).astype(np.uint8)
            files.append(root / label / f"{label}-{i:06d}.png")
            Image.fromarray(img).save(files[-1])
    return files


def create_rate(folder: Path, n: int = 5000) -> float:
    """Small files created per second in one process: the ceiling of anything writing a PNG per image."""
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        (folder / f"{i}.png").write_bytes(b"x" * 300)
    return n / (time.perf_counter() - t0)


def _decode(f: Path) -> int:
    with Image.open(f) as im:
        return np.asarray(im.convert("L")).size


def bare_decode(files: list[Path], workers: int = 1) -> float:
    """Images/s of a decode-only loop (no hashing, resizing, array or manifest): the floor, in
    `workers` processes as ingest uses them."""
    t0 = time.perf_counter()
    if workers == 1:
        for f in files:
            _decode(f)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_decode, files, chunksize=64))
    return len(files) / (time.perf_counter() - t0)


def run_stage(work: Path, stage: str, overrides: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, output) of `ganaug <stage>` as its own process."""
    args = [a for o in overrides for a in ("--set", o)]
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "ganaug.pipeline.plumbing.cli", stage, *args],
                          cwd=work, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(f"[{stage}]")), "")
    return seconds, rss_kb / 1024, line


def bare_train(work: Path, steps: int, batch: int, width: int) -> float:
    """images/s of GANTrainer.step over an in-memory tensor of the same real train images."""
    import pandas as pd
    import torch

    from ganaug.gan import GANConfig, GANTrainer
    from ganaug.pipeline.store.pixels import open_pixels, nhwc_to_float

    df = pd.read_parquet(work / "data/prepared/manifest.parquet")
    rows = np.flatnonzero((df["split"] == "train").to_numpy())
    x = nhwc_to_float(open_pixels(work / "data/prepared", len(df))[rows])
    y = torch.tensor(pd.factorize(df["label"].iloc[rows], sort=True)[0])
    torch.manual_seed(0)
    trainer = GANTrainer(GANConfig(x.shape[-1], 1, 4, z_dim=128, width=width))
    for _ in range(5):
        trainer.step(x[:batch], y[:batch])
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,))
        trainer.step(x[idx], y[idx])
    return steps * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--stages", default="ingest,train,generate,filter,evaluate",
                    help="the first stages to run (each needs the ones before it)")
    args = ap.parse_args()
    stages = args.stages.split(",")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t0 = time.perf_counter()
        files = make_data(work / "data/raw", args.n)
        print(f"data: {len(files)} PNGs in {time.perf_counter() - t0:.0f}s", flush=True)
        bare = bare_decode(files)
        bare_pool = bare_decode(files, os.cpu_count() or 1)
        create = create_rate(work / "probe")
        from ganaug.pipeline.filter import ACCEPT_ALL  # the stages run in subprocesses: torch here costs no stage memory
        from ganaug.pipeline.plumbing.params import as_overrides

        common = ["paths.raw=data/raw", "ingest.size=16", f"train.steps={args.steps}",
                  f"train.checkpoint_every={args.steps}", *as_overrides({"filter": ACCEPT_ALL}), "evaluate.repeats=1",
                  "evaluate.epochs=1", "evaluate.synthetic_shares=[1.0]"]
        one_worker = run_stage(work, "ingest", common + ["ingest.workers=1", "paths.prepared=data/prepared-1",
                                                         "paths.reports=reports-1"])
        results = {}
        for stage in stages:
            results[stage] = run_stage(work, stage, common)
            s, mb, line = results[stage]
            print(f"{stage:>9}: {s:7.1f}s, peak RSS {mb:7.0f} MB  {line[:150]}", flush=True)
        # The filter's guards on (their defaults), one round: each candidate against the real
        # images of its class (near copies), the judge, and the accepted ones (dedupe).
        guarded = common + ["filter.reject_copies=true", "filter.require_agreement=true", "filter.dedupe=true",
                            "filter.max_rounds=1", "paths.accepted=data/accepted-guarded",
                            "paths.reports=reports-guarded"]
        if "filter" in stages:
            results["filter (guards on)"] = run_stage(work, "filter", guarded)
            s, mb, line = results["filter (guards on)"]
            print(f"filter (guards on): {s:7.1f}s, peak RSS {mb:7.0f} MB  {line[:150]}", flush=True)
        ingest_rate = len(files) / results["ingest"][0]
        if "train" in stages:
            streamed = float(re.search(r"([\d.]+) img/s", results["train"][2]).group(1))
            bare_rate = bare_train(work, min(args.steps, 200), 64, 32)
    print(f"\ningest: {ingest_rate:.0f} img/s with {os.cpu_count()} workers (whole stage, process start "
          f"included) vs a bare decode loop in as many processes {bare_pool:.0f} img/s: ratio "
          f"{ingest_rate / bare_pool:.2f} (aim >= 0.8); vs bare single-process decode {bare:.0f} img/s: ratio "
          f"{ingest_rate / bare:.2f}; vs ingest with 1 worker {len(files) / one_worker[0]:.0f} img/s: ratio "
          f"{one_worker[0] / results['ingest'][0]:.2f}; this disk creates {create:.0f} small files/s "
          f"(ingest writes no file per image)")
    if "train" in stages:
        print(f"train: streamed {streamed:.0f} img/s (whole loop) vs bare in-memory step loop {bare_rate:.0f} img/s: "
              f"ratio {streamed / bare_rate:.2f} (aim >= 0.95)")
    worst = max(r[1] for r in results.values())
    print("peak RSS MB: " + ", ".join(f"{k} {v[1]:.0f}" for k, v in results.items())
          + f"; largest {worst:.0f} MB (aim <= 2048)")


if __name__ == "__main__":
    main()
