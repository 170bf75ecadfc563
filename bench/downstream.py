"""Does augmenting help a classifier on rare classes more than what users do anyway?

    python bench/downstream.py --data demo                    # defaults of params.yaml
    python bench/downstream.py --data animal --set train.minutes=7 --set train.width=16

Runs every stage (ingest -> train -> generate -> filter -> evaluate -> append) on the dataset
in a temporary folder and prints evaluate's table in both training regimes (the one set by
evaluate.user_training drives the gate; the other is evaluated after, on the same accepted
images): real only, real over-sampled, SMOTE (the baselines, measured in the same run) and
real + synthetic, each mean +- std over evaluate.repeats classifier seeds with the bootstrap
interval, on the real test split; then the gate (the lower end of the interval of the gain over
the best baseline above evaluate.min_gain) and the rare classes' recall per arm.
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
from ganaug.pipeline.plumbing.params import Params, load_params  # noqa: E402
from ganaug.pipeline.stages import STAGES, run, summarize  # noqa: E402



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=None, help="write evaluate's metrics and timings as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [f"paths.{k}={root / v}" for k, v in Params().paths.model_dump().items() if k != "raw"]
        prepare_args = prepare(args.data, root)
        params = load_params(None, paths + prepare_args + args.overrides)
        timings, results = {}, {}
        for name in STAGES:
            t0 = time.perf_counter()
            results[name] = run(name, params)
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"[{name}] {summarize(name, results[name])} ({timings[name]}s)", flush=True)
        regimes = {params.evaluate.user_training: results["evaluate"]}
        other = "balanced" if params.evaluate.user_training == "plain" else "plain"
        regimes[other] = run("evaluate", load_params(None, [*paths, *prepare_args, *args.overrides,
                                                            f"evaluate.user_training={other}",
                                                            f"paths.reports={root / ('reports-' + other)}"]))
    print(f"\ndata={args.data} overrides={args.overrides} seconds={timings}")
    for regime, m in regimes.items():
        show(regime, m, regime == params.evaluate.user_training)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "timings": timings, "metrics": regimes,
                                              "filter": results["filter"], "train": results["train"]}, indent=1))


def show(regime: str, m: dict, drives_gate: bool):
    print(f"\n{regime} training{' (evaluate.user_training: drives the gate)' if drives_gate else ''}")
    print(f"{'arm':<18}{'balanced acc.':>18}{'macro-F1':>18}  {'90% interval':<18}{'rare recall':>14}")
    for arm, a in m["arms"].items():
        lo, hi = a["macro_f1_interval"]
        print(f"{arm:<18}{a['balanced_accuracy']:>11.4f} ±{a['balanced_accuracy_std']:.4f}"
              f"{a['macro_f1']:>11.4f} ±{a['macro_f1_std']:.4f}  [{lo:.4f}, {hi:.4f}]"
              f"{a['rare_recall']:>14.4f}")
    gate = m["gate"]
    print(f"gate: {'PASSED' if gate['passed'] else 'CLOSED'}: {gate['reason']}; mixes on val: {m['mixes']}")
    print("rare classes:", m["rare_classes"], "| per-class recall of them:",
          {arm: {c: a["per_class_recall"][c] for c in m["rare_classes"]} for arm, a in m["arms"].items()})


if __name__ == "__main__":
    main()
