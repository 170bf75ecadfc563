"""What DVC does with generate's candidates: a PNG per image (before) or one pixel array (now).

    python bench/pixel_store.py                      # 100,000 images of 32 x 32 grey
    python bench/pixel_store.py --images 20000 --size 16

Writes the same images both ways with generate's own writers (sampler.write_images: a PNG per
image, as generate did; pixels.PixelWriter: one pixels.u8, as it does now), then, in a fresh
git + DVC repository for each, times what `dvc repro` and a user's push do with such an output:
`dvc add` (hash every file, fill the cache), `dvc status` (is anything changed?), `dvc push` to
a local remote, and reports the cache's size and file count. The images are scikit-learn's
digits, upscaled, shifted at random and given +-2 grey levels of noise (seed 0): all unique, as
a generator's are. Each figure is printed with the ratio PNG / array measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganaug.pipeline.store.pixels import PixelWriter  # noqa: E402
from ganaug.pipeline.training.sampler import write_images  # noqa: E402


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits

    from ganaug.pipeline.store.images import convert, resizer

    digits = (load_digits().images * (255 / 16)).astype(np.uint8)
    up = resizer(size, "stretch")
    base = np.stack([convert(d[:, :, None], up) for d in digits])  # N x size x size x 1
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), n)
    shifts = rng.integers(-2, 3, (n, 2))
    imgs = np.stack([np.roll(base[i], tuple(s), axis=(0, 1)) for i, s in zip(pick, shifts)])
    # +-2 grey levels of noise: every image unique, as a generator's are (DVC would store a
    # repeated PNG once), and PNG compresses them about as it does real candidates.
    return np.clip(imgs.astype(np.int16) + rng.integers(-2, 3, imgs.shape), 0, 255).astype(np.uint8)


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{cmd} failed: {done.stdout}{done.stderr}")
    return round(time.perf_counter() - t0, 2)


def measure(write, n: int, work: Path) -> dict:
    repo, remote = work / "repo", work / "remote"
    repo.mkdir(parents=True)
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "remote", "add", "-d", "local", str(remote)]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    folder = repo / "candidates"
    folder.mkdir()
    t0 = time.perf_counter()
    write(folder)
    out = {"write_s": round(time.perf_counter() - t0, 3),
           "files": sum(1 for p in folder.rglob("*") if p.is_file())}
    out["dvc_add_s"] = timed([*dvc, "add", "-q", "candidates"], repo)
    out["dvc_status_s"] = timed([*dvc, "status", "-q"], repo)
    out["dvc_push_s"] = timed([*dvc, "push", "-q"], repo)
    cache = [p for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()]
    out["cache_files"] = len(cache)
    out["cache_mb"] = round(sum(p.stat().st_size for p in cache) / 2**20, 1)
    out["per_image_bytes_in_cache"] = round(out["cache_mb"] * 2**20 / n, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    n = args.images
    imgs = images(n, args.size)
    rows = pd.DataFrame({"label": [str(i % 10) for i in range(n)], "sample_id": [f"{i:020x}" for i in range(n)]})

    def as_png(folder: Path):  # generate before: a PNG per candidate
        write_images(rows, imgs, folder)

    def as_array(folder: Path):  # generate now: one pixel array (the manifest is the same either way)
        pixels = PixelWriter(folder, imgs.shape[1:])
        for start in range(0, n, 10_000):  # as shards arrive
            pixels.extend(imgs[start:start + 10_000])
        pixels.close()

    results = {}
    for name, write in (("png", as_png), ("array", as_array)):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = measure(write, n, Path(tmp))
        print(f"{name:>5}: {json.dumps(results[name])}", flush=True)
    ratios = {k: round(results["png"][k] / results["array"][k], 1) if results["array"][k] else None
              for k in results["png"]}
    print(f"ratio png / array: {json.dumps(ratios)}")
    print(f"{n} images of {args.size}x{args.size}x1; {os.cpu_count()} cores")
    if args.out:
        Path(args.out).write_text(json.dumps({"images": n, "size": args.size, **results, "ratio": ratios}, indent=1))


if __name__ == "__main__":
    main()
