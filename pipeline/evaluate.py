"""evaluate: does the augmentation help? Same small CNN trained on real-only, on real
over-sampled to balance, and on real+synthetic, tested on the real test split; plus
fidelity and diversity of the synthetic images.

Both classifiers get the same number of optimizer steps (evaluate.epochs over the real
set), so a gain cannot come from training longer. Results are averaged over
evaluate.repeats seeds; the per-seed spread is reported next to the mean.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
from .progress import progress

from . import classifier
from .errors import QualityGateError
from .images import load_tensor
from .io import atomic_file, write_json
from .manifest import label_map_of, read_manifest
from .params import Params


def _tensors(rows: pd.DataFrame, root: Path, label_map, channels) -> tuple[torch.Tensor, torch.Tensor]:
    return (load_tensor([root / p for p in rows["path"]], channels),
            torch.tensor([label_map[v] for v in rows["label"]], dtype=torch.long))


def scores(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict:
    labels = list(range(len(names)))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "per_class_recall": dict(zip(names, recall.tolist())),
    }


def _mean(runs: list[dict]) -> dict:
    out = {k: round(float(np.mean([r[k] for r in runs])), 4)
           for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    out["balanced_accuracy_std"] = round(float(np.std([r["balanced_accuracy"] for r in runs])), 4)
    out["per_class_recall"] = {c: round(float(np.mean([r["per_class_recall"][c] for r in runs])), 4)
                               for c in runs[0]["per_class_recall"]}
    return out


def evaluate(params: Params) -> dict:
    cfg, ch = params.evaluate, params.ingest.channels
    prepared_dir = Path(params.paths.prepared)
    prepared = read_manifest(prepared_dir)
    # The synthetic images added: from the augmented set (DVC mode), or, when appending in
    # place to a tracked set, this run's accepted batch. Either way: real train + these.
    syn_dir = Path(params.paths.accepted if params.append.target else params.paths.augmented)
    synth = read_manifest(syn_dir).query("source == 'synthetic'")
    label_map = label_map_of(prepared)
    names = list(label_map)
    real = prepared[(prepared["split"] == "train") & (prepared["source"] == "real")]
    test = prepared[prepared["split"] == "test"]
    x_real, y_real = _tensors(real, prepared_dir, label_map, ch)
    x_syn, y_syn = _tensors(synth, syn_dir, label_map, ch)
    x_aug, y_aug = torch.cat([x_real, x_syn]), torch.cat([y_real, y_syn])
    x_test, y_test = _tensors(test, prepared_dir, label_map, ch)
    steps = cfg.epochs * math.ceil(len(real) / cfg.batch_size)

    # Three training sets: the real data as is; the real data over-sampled to balance
    # (the classic remedy: augmentation should beat it, not just the raw baseline); augmented.
    arms = {"real_only": (x_real, y_real, False), "real_oversampled": (x_real, y_real, True),
            "augmented": (x_aug, y_aug, False)}
    runs = {name: [] for name in arms}
    judge = None  # the over-sampled real classifier of the first seed: it does predict rare classes
    for r in progress(range(cfg.repeats), desc="evaluate", unit="seed"):
        for name, (x, y, balanced) in arms.items():
            model = classifier.fit(x, y, len(names), steps, cfg.batch_size, cfg.lr, cfg.width, cfg.seed + r,
                                   balanced=balanced)
            runs[name].append(scores(y_test.numpy(), classifier.predict(model, x_test)[0], names))
            if judge is None and name == "real_oversampled":
                judge = model
    means = {name: _mean(r) for name, r in runs.items()}
    real_only, aug = means["real_only"], means["augmented"]
    keys = ("accuracy", "balanced_accuracy", "macro_f1")
    metrics = {
        **means,
        "delta": {k: round(aug[k] - real_only[k], 4) for k in keys},
        "delta_vs_oversampled": {k: round(aug[k] - means["real_oversampled"][k], 4) for k in keys},
        "synthetic": synthetic_quality(judge, x_syn, y_syn, x_real, y_real, x_test, label_map),
        "train_images": {"real": len(real), "augmented": len(real) + len(synth)},
        "classifier": {"steps": steps, "repeats": cfg.repeats, "seeds": [cfg.seed + r for r in range(cfg.repeats)]},
    }
    reports = Path(params.paths.reports)
    write_json(reports / "metrics.json", metrics)
    recall = pd.DataFrame({"class": names, **{name: [m["per_class_recall"][c] for c in names]
                                              for name, m in means.items()}})
    with atomic_file(reports / "per_class_recall.csv") as tmp:
        recall.to_csv(tmp, index=False)

    gain = metrics["delta"]["balanced_accuracy"]
    if cfg.min_gain is not None and gain < cfg.min_gain:
        raise QualityGateError(f"quality gate: balanced accuracy moved {gain:+.4f} with augmentation, "
                               f"below evaluate.min_gain={cfg.min_gain} (see {reports / 'metrics.json'})")
    return metrics


def synthetic_quality(model, x_syn, y_syn, x_real, y_real, x_test, label_map) -> dict:
    """Fidelity and diversity in the feature space of a classifier trained on real images
    (class-balanced, so that it does predict the rare classes).

    - label_agreement: share of synthetic images that classifier assigns to their intended class.
    - frechet_distance: real train vs synthetic features; frechet_reference is real train vs
      real test, the distance a perfect generator would be expected to reach.
    - diversity: mean within-class pairwise feature distance, synthetic / real (1 = as varied).
    """
    if len(x_syn) < 2:
        return {"count": len(x_syn)}
    pred, f_syn = classifier.predict(model, x_syn)
    _, f_real = classifier.predict(model, x_real)
    _, f_test = classifier.predict(model, x_test)
    y_syn, y_real = y_syn.numpy(), y_real.numpy()
    names = {i: n for n, i in label_map.items()}
    per_class, ratios = {}, []
    for c in np.unique(y_syn):
        mask = y_syn == c
        per_class[names[c]] = round(float((pred[mask] == c).mean()), 4)
        if mask.sum() >= 2 and (y_real == c).sum() >= 2:
            ratios.append(_spread(f_syn[mask]) / max(_spread(f_real[y_real == c]), 1e-12))
    return {
        "count": len(x_syn),
        "label_agreement": round(float((pred == y_syn).mean()), 4),
        "label_agreement_per_class": per_class,
        "frechet_distance": round(classifier.frechet_distance(f_real, f_syn), 4),
        "frechet_reference": round(classifier.frechet_distance(f_real, f_test), 4),
        "diversity": round(float(np.mean(ratios)), 4) if ratios else None,
    }


def _spread(f: np.ndarray, cap: int = 500) -> float:
    if len(f) > cap:  # O(n^2) pairs: a fixed subsample is plenty for a mean
        f = f[np.random.default_rng(0).choice(len(f), cap, replace=False)]
    d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
    return float(d.sum() / (len(f) * (len(f) - 1)))
