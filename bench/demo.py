"""The demo end to end (demo-data + all stages, params.yaml as committed), timed per stage.

    python bench/demo.py [--set section.key=value ...]

Runs in a temporary folder, so the repository's own outputs are untouched. Prints wall time
per stage and in total, training speed, evaluate's arms (real only, real over-sampled, SMOTE,
real + synthetic) with their 90% paired bootstrap intervals, the ratio to real only, and the
gate's decision.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

from ganaug.pipeline.plumbing.params import load_params
from ganaug.pipeline.stages import STAGES, run

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml", args.overrides)
    times, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # params.yaml's paths are relative: outputs land here
        t_all = time.perf_counter()
        for name in ("demo-data", *STAGES):
            t0 = time.perf_counter()
            results[name] = run(name, params)
            times[name] = time.perf_counter() - t0
        total = time.perf_counter() - t_all
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()) + f"; total {total:.1f}")
    tr = results["train"]
    print(f"train: {tr['steps']} steps, {tr['images_per_s']} img/s, {tr['achieved_gflops']} GFLOPS")
    ev = results["evaluate"]
    print(f"{'':18} {'bal.acc':>9} {'macro-F1':>9} {'90% interval':>17}  recall of rare classes")
    rare = [str(c) for c in params.demo.rare_classes]
    for arm, m in ev["arms"].items():
        lo, hi = m["macro_f1_interval"]
        print(f"{arm:18} {m['balanced_accuracy']:9.4f} {m['macro_f1']:9.4f}   [{lo:.4f}, {hi:.4f}]  "
              + ", ".join(f"{c}: {m['per_class_recall'][c]:.3f}" for c in rare))
    arms = ev["arms"]
    base = arms["real"]["macro_f1"]
    print(f"macro-F1 ratio oversampled/real = {arms['oversampled']['macro_f1'] / base:.3f}"
          + (f"; synthetic/real = {arms['synthetic']['macro_f1'] / base:.3f}" if "synthetic" in arms else ""))
    print(f"gate {'PASSED' if ev['gate']['passed'] else 'closed'}: {ev['gate']['reason']}")
    q = ev["synthetic_quality"]
    print(f"synthetic: {q['count']} accepted"
          + (f", CAS {q['cas']} (real-trained reference {q['cas_real_reference']})" if "cas" in q else ""))
    f = results["filter"]
    print(f"filter: accepted {f['accepted']}/{f['needed']}, acceptance rate {f['acceptance_rate']}")

if __name__ == "__main__":
    main()
