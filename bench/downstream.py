"""Does augmenting help a classifier on rare classes more than what users do anyway?

    python bench/downstream.py --data demo                    # defaults of params.yaml
    python bench/downstream.py --data animal --set train.minutes=7 --set train.width=16

Runs every stage (ingest -> train -> generate -> filter -> evaluate -> append) on the dataset
in a temporary folder and prints evaluate's table: real only, real over-sampled, SMOTE (the
baselines, measured in the same run) and real + synthetic, each mean +- std over
evaluate.repeats classifier seeds, on the real test split; then the gate and the aim
(synthetic beats the best baseline on macro-F1 and on rare-class recall by more than the
seed spread).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import prepare  # noqa: E402
from ganaug.pipeline.params import Params, load_params  # noqa: E402
from ganaug.pipeline.stages import STAGES, run, summarize  # noqa: E402

ARMS = ("real_only", "real_oversampled", "smote", "synthetic")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=None, help="write evaluate's metrics and timings as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [f"paths.{k}={root / v}" for k, v in Params().paths.model_dump().items() if k != "raw"]
        params = load_params(None, paths + prepare(args.data, root) + args.overrides)
        timings, results = {}, {}
        for name in STAGES:
            t0 = time.perf_counter()
            results[name] = run(name, params)
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"[{name}] {summarize(name, results[name])} ({timings[name]}s)", flush=True)
    m = results["evaluate"]
    print(f"\ndata={args.data} overrides={args.overrides} seconds={timings}")
    print(f"{'arm':<18}{'balanced acc.':>18}{'macro-F1':>18}{'rare recall':>18}")
    for arm in ARMS:
        if arm in m:
            print(f"{arm:<18}" + "".join(f"{m[arm][k]:>11.4f} ±{m[arm][k + '_std']:.4f}"
                                         for k in ("balanced_accuracy", "macro_f1", "rare_recall")))
    gate = m["gate"]
    print(f"gate: {'PASSED' if gate['passed'] else 'CLOSED'}: {gate['reason']}; mixes on val: {m['mixes']}")
    if "synthetic" in m:
        best = {k: max((a for a in ARMS[:3]), key=lambda a: m[a][k]) for k in ("macro_f1", "rare_recall")}
        for k, arm in best.items():
            gain = m["synthetic"][k] - m[arm][k]
            spread = max(m["synthetic"][k + "_std"], m[arm][k + "_std"])
            print(f"aim: synthetic beats {arm} on {k} by more than the seed spread: "
                  f"{gain:+.4f} vs spread {spread:.4f}: {'met' if gain > spread else 'MISSED'}")
    print("rare classes:", m["rare_classes"], "| per-class recall of them:",
          {a: {c: m[a]["per_class_recall"][c] for c in m["rare_classes"]} for a in ARMS if a in m})
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "timings": timings, "metrics": m,
                                              "filter": results["filter"], "train": results["train"]}, indent=1))


if __name__ == "__main__":
    main()
