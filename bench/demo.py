"""The demo end to end (demo-data + all stages, params.yaml as committed), timed per stage.

    python bench/demo.py [--set section.key=value ...]

Runs in a temporary folder, so the repository's own outputs are untouched. Prints wall time
per stage and in total, training speed, and the evaluate metrics for the three training sets:
real only (the baseline), real over-sampled to balance, and real + synthetic (augmented),
with the augmented/baseline ratio.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

from ganaug.pipeline.params import load_params
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
    print(f"{'':18} {'accuracy':>9} {'bal.acc':>9} {'macro-F1':>9}  recall of rare classes")
    rare = [str(c) for c in params.demo.rare_classes]
    for arm in ("real_only", "real_oversampled", "smote", "synthetic"):
        m = ev[arm]
        print(f"{arm:18} {m['accuracy']:9.4f} {m['balanced_accuracy']:9.4f} {m['macro_f1']:9.4f}  "
              + ", ".join(f"{c}: {m['per_class_recall'][c]:.3f}" for c in rare))
    base, aug = ev["real_only"]["balanced_accuracy"], ev["synthetic"]["balanced_accuracy"]
    print(f"balanced accuracy ratio augmented/real_only = {aug / base:.3f}; "
          f"augmented/oversampled = {aug / ev['real_oversampled']['balanced_accuracy']:.3f}")
    s = ev["synthetic"]
    print(f"synthetic: {s['count']} images, label agreement {s['label_agreement']}, Fréchet {s['frechet_distance']} "
          f"(real-vs-real reference {s['frechet_reference']}), diversity {s['diversity']}")
    print(f"filter: accepted {results['filter']['accepted']}/{results['filter']['needed']}, "
          f"acceptance rate {results['filter']['acceptance_rate']}")


if __name__ == "__main__":
    main()
