"""Sharded generation: the Prefect flow on a 2-worker Dask LocalCluster against one process.

    dvc repro                                   # first: the demo's prepared set and checkpoint
    python -m bench.sharded_generate [--n 40000] [--workers 2]

Both generate the same plan (about n candidates for the demo's two rare classes, shards of
5,000) from the demo's checkpoint; prints images/s of each (the flow's time includes starting
the cluster and its workers importing torch, not the Prefect server), the ratio, and whether
the two candidate folders are identical file for file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    from ganaug.flows.augment import generate as generate_on_dask
    from ganaug.pipeline.generate import generate
    from ganaug.pipeline.manifest import class_counts, read_manifest
    from ganaug.pipeline.params import load_params

    counts = class_counts(read_manifest(REPO / "data/prepared"))
    rare = sorted(counts, key=counts.get)[:2]
    final = int(args.n / 1.5 / len(rare))  # candidates = needed x oversample
    strategy = "{" + ", ".join(f"'{k}': {counts[k] + final}" for k in rare) + "}"
    with tempfile.TemporaryDirectory() as d, prefect_test_harness(server_startup_timeout=180):
        tmp = Path(d)

        def params(name, **extra):
            sets = [f"paths.prepared={REPO / 'data/prepared'}", f"paths.model={REPO / 'models/gan.pt'}",
                    f"paths.candidates={tmp / name}", f"generate.sampling_strategy={strategy}",
                    "generate.shard_size=5000"] + [f"generate.{k}={v}" for k, v in extra.items()]
            return load_params(None, sets)

        t0 = time.perf_counter()
        one = generate(params("one"))
        t_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate_on_dask(params("two", workers=args.workers))
        t_two = time.perf_counter() - t0
        n = sum(one["candidates"].values())
        same = tree(tmp / "one") == tree(tmp / "two")
    print(f"{n} candidates in {one['shards']} shards: one process {n / t_one:.0f} img/s ({t_one:.1f}s); "
          f"{args.workers}-worker LocalCluster {n / t_two:.0f} img/s ({t_two:.1f}s, cluster start included); "
          f"ratio {t_one / t_two:.2f}; identical files: {same}")


if __name__ == "__main__":
    main()
