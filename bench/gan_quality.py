"""GAN quality per class, ganaug's training recipe against the previous one, same budget.

    python bench/gan_quality.py --data demo [--steps 1000] [--minutes M] [--per-class 100]
    python bench/gan_quality.py --data animal --minutes 7 --width 16   # pip install --no-deps animal-mnist
    python bench/gan_quality.py --data demo --recipes ganaug --set train.lecam=0.3   # one variant alone

Baseline, measured in the same run: the recipe ganaug shipped before (one D step per G step at
G's learning rate, DiffAugment translation + cutout, no mode seeking). Both train on the same
ingested data with the same step/time budget. Figures, in the features of a small classifier
trained here on the real train split (no Inception weights): per-class Fréchet distance (rare
classes vs the others), k-NN precision/recall, within-class diversity against the real
images', memorization, CAS (a classifier trained on synthetic images alone, tested on real
test images, against the same classifier trained on the real images), and the D margin over
the last fifth of training. Seeds: every seed 0, as in params.yaml.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import prepare  # noqa: E402
from ganaug.gan import sample_images, load_sampler  # noqa: E402
from ganaug.pipeline.judges import classifier, quality  # noqa: E402
from ganaug.pipeline.store.checkpoints import load_checkpoint  # noqa: E402
from ganaug.pipeline.evaluate import rare_classes  # noqa: E402
from ganaug.pipeline.store.images import load_tensor  # noqa: E402
from ganaug.pipeline.ingest import ingest  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402
from ganaug.pipeline.plumbing.params import load_params  # noqa: E402
from ganaug.pipeline.train import train  # noqa: E402

RECIPES = {
    "ganaug": [],
    "previous": ["train.n_dis=1", "train.lr_d=0.0002", "train.diffaug=[translation, cutout]",
                 "train.mode_seeking=0.0"],
}


def split_tensors(params, split):
    root = Path(params.paths.prepared)
    df = read_manifest(root)
    lm = label_map_of(df)
    rows = df[df["split"] == split]
    return load_tensor([root / p for p in rows["path"]], params.ingest.channels), \
        torch.tensor([lm[v] for v in rows["label"]]), lm


def measure(params, per_class: int) -> dict:
    x, y, lm = split_tensors(params, "train")
    x_test, y_test, _ = split_tensors(params, "test")
    names = list(lm)
    counts = {n: int((y == i).sum()) for n, i in lm.items()}
    rare = rare_classes(counts)
    ref = classifier.fit_reference(x, y, len(names), params.evaluate, 0)
    state = load_checkpoint(params.paths.model)
    G, _ = load_sampler(state, torch.device("cpu"))
    labels = [c for c in range(len(names)) for _ in range(per_class)]
    x_syn = sample_images(G, labels, list(range(len(labels))))
    y_syn = torch.tensor(labels)
    per = quality.per_class(ref, x, y, x_syn, y_syn, names)
    cas_model = classifier.fit_reference(x_syn, y_syn, len(names), params.evaluate, 0)
    cas = float((classifier.predict(cas_model, x_test)[0] == y_test.numpy()).mean())
    real_acc = float((classifier.predict(ref, x_test)[0] == y_test.numpy()).mean())
    metrics = json.loads((Path(params.paths.train_reports) / "metrics.json").read_text())
    fd_rare = float(np.mean([per[c]["frechet"] for c in rare]))
    fd_common = float(np.mean([per[c]["frechet"] for c in names if c not in rare]))
    return {
        "steps": metrics["steps_done"], "seconds": metrics["seconds"], "best_step": metrics["best_step"],
        "d_margin_last_fifth": metrics["health"]["margin_last_fifth"], "health": metrics["health"]["status"],
        "diversity_min": min(per[c]["diversity"] for c in names),
        "diversity_rare": {c: per[c]["diversity"] for c in rare},
        "memorization_max": max(per[c]["memorization"] for c in names),
        "fd_rare": round(fd_rare, 3), "fd_common": round(fd_common, 3), "fd_ratio": round(fd_rare / fd_common, 3),
        "precision": round(float(np.mean([per[c]["precision"] for c in names])), 3),
        "recall": round(float(np.mean([per[c]["recall"] for c in names])), 3),
        "label_agreement": round(float(np.mean([per[c]["label_agreement"] for c in names])), 3),
        "cas": round(cas, 4), "real_accuracy": round(real_acc, 4), "cas_ratio": round(cas / real_acc, 3),
        "rare_classes": rare, "per_class": per,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=None, help="train.minutes per recipe")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--recipes", default="ganaug,previous")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="params for every recipe")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = prepare(args.data, root) + [f"paths.{k}={root / k}" for k in ("prepared", "reports")]
        base += [f"train.steps={args.steps}", "train.checkpoint_every=" + str(max(50, args.steps // 8))]
        if args.minutes:
            base.append(f"train.minutes={args.minutes}")
        if args.width:
            base.append(f"train.width={args.width}")
        base += args.overrides
        ingest(load_params(None, base))
        results = {}
        for name in args.recipes.split(","):
            p = load_params(None, base + RECIPES[name] + [f"paths.model={root / name / 'gan.pt'}",
                                                          f"paths.train_reports={root / name / 'reports'}"])
            t0 = time.perf_counter()
            train(p)
            results[name] = measure(p, args.per_class)
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    keys = ["steps", "seconds", "d_margin_last_fifth", "health", "diversity_min", "memorization_max",
            "fd_rare", "fd_common", "fd_ratio", "precision", "recall", "label_agreement", "cas", "real_accuracy",
            "cas_ratio"]
    names = list(results)
    print(f"data={args.data} steps<={args.steps} minutes={args.minutes} width={args.width or 'params'}")
    print(f"{'figure':<22}" + "".join(f"{n:>14}" for n in names) + (f"{'ratio':>10}" if len(names) == 2 else ""))
    for k in keys:
        vals = [results[n][k] for n in names]
        ratio = ""
        if len(names) == 2 and all(isinstance(v, (int, float)) for v in vals) and vals[1]:
            ratio = f"{vals[0] / vals[1]:>10.2f}"
        print(f"{k:<22}" + "".join(f"{v!s:>14}" for v in vals) + ratio)
    r = results[names[0]]
    aims = {"D margin > 0.05 (last fifth)": r["d_margin_last_fifth"] > 0.05,
            "every class diversity >= 0.8": r["diversity_min"] >= 0.8,
            "memorization <= 5%": r["memorization_max"] <= 0.05,
            "rare FD within 2x of common": r["fd_ratio"] <= 2.0,
            "CAS >= 0.7 of real": r["cas_ratio"] >= 0.7}
    for aim, met in aims.items():
        print(f"aim ({names[0]}): {aim}: {'met' if met else 'MISSED'}")
    print("rare classes:", r["rare_classes"], "diversity:", r["diversity_rare"])
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results, "aims": aims}, indent=1))


if __name__ == "__main__":
    main()
