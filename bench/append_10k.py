"""Time of a versioned in-place append of 10,000 images (copy, DVC hashing, commit, tag, push).

    python bench/append_10k.py [--n 10000]

Baseline, in the same run: a plain `dvc add` + `dvc push` of the same images as a new
folder in a fresh repository (what DVC itself costs for that many files). Prints both and
the ratio.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ganaug.pipeline.store.manifest import write_manifest
from ganaug.pipeline.plumbing.params import load_params
from ganaug.pipeline.store.versioned import append_in_place


def sh(cwd, *cmd):
    if cmd[0] == "dvc":
        cmd = (sys.executable, "-m", "dvc", *cmd[1:])
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def repo(path: Path, remote: Path):
    path.mkdir(parents=True)
    sh(path, "git", "init", "-q")
    sh(path, "git", "config", "user.email", "bench@example.com")
    sh(path, "git", "config", "user.name", "bench")
    sh(path, "dvc", "init", "-q")
    sh(path, "dvc", "remote", "add", "-d", "store", str(remote))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        accepted = tmp / "accepted"
        rows = []
        for i in range(args.n):
            label = f"c{i % 10}"
            rel = f"images/{label}/{i:06d}.png"
            (accepted / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(accepted / rel)
            rows.append({"sample_id": f"{i:020d}", "path": rel, "label": label, "split": "train",
                         "source": "synthetic", "d_score": 0.0, "seed": i, "checkpoint": "bench"})
        write_manifest(pd.DataFrame(rows), accepted)

        host = tmp / "host"
        repo(host, tmp / "remote")
        for c in range(10):
            (host / "train" / f"c{c}").mkdir(parents=True)
            Image.new("L", (16, 16), c).save(host / "train" / f"c{c}" / "real.png")
        sh(host, "dvc", "add", "-q", "train")
        sh(host, "git", "add", "-A")
        sh(host, "git", "commit", "-q", "-m", "v1")
        params = load_params(None, [f"paths.accepted={accepted}", f"append.target={host / 'train'}"])
        t0 = time.perf_counter()
        result = append_in_place(params)
        ours = time.perf_counter() - t0
        assert result["changed"] and result["pushed"] and result["images"] == args.n

        plain = tmp / "plain"
        repo(plain, tmp / "remote2")
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", str(accepted / "images"), str(plain / "images")], check=True)
        sh(plain, "dvc", "add", "-q", "images")
        sh(plain, "dvc", "push", "-q")
        base = time.perf_counter() - t0

        t0 = time.perf_counter()
        again = append_in_place(params)
        noop = time.perf_counter() - t0
        assert not again["changed"]
    print(f"append in place of {args.n} images (copy + dvc add + commit + tag + push): {ours:.1f} s "
          f"({args.n / ours:.0f} images/s)")
    print(f"baseline: cp + dvc add + dvc push of the same files: {base:.1f} s; ratio = {ours / base:.2f}")
    print(f"repeat of the same batch (idempotent no-op, status checks included): {noop:.1f} s")


if __name__ == "__main__":
    main()
