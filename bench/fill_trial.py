"""The fill trial (issue 14): on a bench/tail.py run, its accepted images capped at each share and
the class filled with duplicates of its real images to the plan's counts, judged plainly
(bench/judge.py, seeds 0-2, 1,000 kept-apart images) against the over-sampled folder.

    python bench/fill_trial.py /tmp/tail 0.1 0.25 0.5 1.0

What decided append.fill (docs/results.md): filled, ganaug's images were as good as duplicates;
unfilled, the classes the filter left short lost to over-sampling.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge  # noqa: E402
from bench.tail import RAREST, tail_params  # noqa: E402
from ganaug.pipeline.judges import evidence  # noqa: E402
from ganaug.pipeline.judges.gate import cap_synthetic  # noqa: E402
from ganaug.pipeline.store.manifest import read_manifest  # noqa: E402


def filled(x_real, y_real, x_syn, y_syn, target: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Real + synthetic (at most what a class needs), duplicates of real images for the rest."""
    xs, ys = [x_real], [y_real]
    for c in range(int(y_real.max()) + 1):
        need = target - int((y_real == c).sum())
        if need <= 0:
            continue
        mine = np.flatnonzero(y_syn == c)[:need]
        dup = rng.choice(np.flatnonzero(y_real == c), need - len(mine))
        xs += [x_syn[mine], x_real[dup]]
        ys += [y_syn[mine], y_real[dup]]
    return np.concatenate(xs), np.concatenate(ys)


def main():
    work, shares = Path(sys.argv[1]), [float(s) for s in sys.argv[2:]] or [0.25, 0.5, 1.0]
    params = tail_params(work)
    size = params.ingest.size
    x_real, y_real, names = judge.read_folder(work / "tail", size)
    x_test, y_test, _ = judge.read_folder(work / "tail-test", size, names)
    counts = np.bincount(y_real, minlength=len(names))
    accepted = read_manifest(params.paths.accepted)
    accepted = accepted[accepted["source"] == "synthetic"].sort_values("seed", kind="stable")
    preds: dict[str, list] = {}
    for seed in range(3):
        rng = np.random.RandomState(seed)
        sets = {"oversampled": judge.oversampled(x_real, y_real, "not majority", seed)}
        for share in shares:
            kept = cap_synthetic(accepted, {n: int(counts[i]) for i, n in enumerate(names)}, share)
            x_syn = np.stack([judge.read_image(Path(params.paths.accepted) / p, size) for p in kept["path"]])
            y_syn = np.array([names.index(v) for v in kept["label"]])
            sets[f"filled, share {share}"] = filled(x_real, y_real, x_syn, y_syn, int(counts.max()), rng)
        for arm, (x, y) in sets.items():
            preds.setdefault(arm, []).append(judge.predict(judge.train_plain(x, y, len(names), seed), x_test))
    rare = [names.index(c) for c in RAREST]
    boot = evidence.bootstrap(y_test, {a: np.stack(p) for a, p in preds.items()}, len(names), rare)
    for arm, b in boot.items():
        lo, hi = evidence.interval(b["macro_f1"], 0.9)
        gain = b["macro_f1"] - boot["oversampled"]["macro_f1"]
        g_lo, g_hi = evidence.interval(gain, 0.9)
        recall = [round(float(b["recall"][0, i]), 2) for i in range(len(names))]
        print(f"{arm:<20} macro-F1 {b['macro_f1'][0]:.4f} [{lo:.4f}, {hi:.4f}]  gain over over-sampled "
              f"{gain[0]:+.4f} [{g_lo:+.4f}, {g_hi:+.4f}]  recall per class {recall}")


if __name__ == "__main__":
    main()
