"""Generate and filter spread over workers: the Prefect flows on a 2-worker Dask LocalCluster
against one process.

    dvc repro                                   # first: the demo's prepared set and checkpoint
    python -m bench.dask_workers [--n 40000] [--workers 2]

Both generate the same plan (about n candidates for the demo's two rare classes, shards of
5,000) from the demo's checkpoint, then filter them (the guards on, one round: a class per
task); prints images/s of each (the flows' times include starting the cluster and its workers
importing torch, not the Prefect server), the ratios, and whether the two candidate folders,
the two accepted folders and the two filter reports are identical.
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


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    import json

    from functools import partial

    from ganaug.flows.augment import run_stage

    filter_on_dask, generate_on_dask = partial(run_stage, "filter"), partial(run_stage, "generate")
    from ganaug.pipeline.filter import filter_candidates
    from ganaug.pipeline.generate import generate
    from ganaug.pipeline.store.manifest import augmented_counts, read_manifest
    from ganaug.pipeline.plumbing.params import load_params

    counts = augmented_counts(read_manifest(REPO / "data/prepared"))
    rare = sorted(counts, key=counts.get)[:2]
    final = int(args.n / 1.5 / len(rare))  # candidates = needed x oversample
    strategy = "{" + ", ".join(f"'{k}': {counts[k] + final}" for k in rare) + "}"
    with tempfile.TemporaryDirectory() as d, prefect_test_harness(server_startup_timeout=180):
        tmp = Path(d)

        def params(name, **extra):
            sets = [f"paths.prepared={REPO / 'data/prepared'}", f"paths.model={REPO / 'models/gan.pt'}",
                    f"paths.candidates={tmp / name}", f"paths.accepted={tmp / name}-accepted",
                    f"paths.reports={tmp / name}-reports", f"generate.sampling_strategy={strategy}",
                    "generate.shard_size=5000", "filter.max_rounds=1"] + [f"{k}={v}" for k, v in extra.items()]
            return load_params(None, sets)

        one, t_one = timed(generate, params("one"))
        _, t_two = timed(generate_on_dask, params("two", **{"generate.workers": args.workers}))
        n = sum(one["candidates"].values())
        same = tree(tmp / "one") == tree(tmp / "two")
        kept, f_one = timed(filter_candidates, params("one"))
        _, f_two = timed(filter_on_dask, params("two", **{"filter.workers": args.workers}))
        same_kept = tree(tmp / "one-accepted") == tree(tmp / "two-accepted") and \
            json.loads((tmp / "one-reports/filter.json").read_text()) == json.loads((tmp / "two-reports/filter.json").read_text())
    print(f"generate: {n} candidates in {one['shards']} shards: one process {n / t_one:.0f} img/s ({t_one:.1f}s); "
          f"{args.workers}-worker LocalCluster {n / t_two:.0f} img/s ({t_two:.1f}s, cluster start included); "
          f"ratio {t_one / t_two:.2f}; identical files: {same}")
    print(f"filter: {n} candidates of {len(rare)} classes, {kept['accepted']} accepted: one process "
          f"{n / f_one:.0f} img/s ({f_one:.1f}s); {args.workers}-worker LocalCluster {n / f_two:.0f} img/s "
          f"({f_two:.1f}s, cluster start included); ratio {f_one / f_two:.2f}; identical files and report: {same_kept}")


if __name__ == "__main__":
    main()
