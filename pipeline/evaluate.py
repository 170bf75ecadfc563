"""evaluate: do the accepted synthetic images help more than what users would do anyway?

Runs before append and decides the gate append acts on. One fixed small CNN, the same
classic augmentation (albumentations, `evaluate.augment`) and the same number of optimizer
steps for every arm, `evaluate.repeats` seeds each, tested on ganaug's real test split:

- real_only         the real train images as they are;
- real_oversampled  the same, drawn class-balanced (random over-sampling);
- smote             SMOTE on pixels, to balance (imbalanced-learn's algorithm and draws, kept as
                    row pairs and made a batch at a time: pipeline/smote.py);
- synthetic         real + accepted synthetic images, drawn class-balanced, with at most
                    `share` of a class's images synthetic. The share is chosen on the val
                    split among `evaluate.synthetic_shares`, never on test.

The gate (pipeline/gate.py): the synthetic arm must beat the best other arm on
`evaluate.gate_metric` by more than `evaluate.min_gain` and by more than the seed spread (the
larger std of the two). Written to reports/gate.json; append reads it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from ganaug.gan import pick_device

from . import classifier, quality
from .gate import GATE_FILE, OTHER_ARMS, cap_synthetic, decide
from .files import atomic_file, write_json
from .manifest import label_map_of, read_manifest
from .params import Params
from .pixels import Images, Stack
from .smote import Smote
from .progress import progress



def _images(folder: Path, manifest: pd.DataFrame, rows: pd.DataFrame, label_map, writer: str):
    """The rows' images, left on disk (pixels.Images: read a batch at a time), and labels."""
    at = np.flatnonzero(manifest.index.isin(rows.index))
    return (Images(folder, len(manifest), at, writer),
            torch.tensor([label_map[v] for v in manifest["label"].iloc[at]], dtype=torch.long))


def rare_classes(counts: dict[str, int]) -> list[str]:
    """Classes with at most half the median class's real train images (else the smallest)."""
    median = float(np.median(list(counts.values())))
    rare = [k for k, n in counts.items() if n <= 0.5 * median]
    return rare or [min(counts, key=counts.get)]


def scores(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], rare: list[str]) -> dict:
    labels = list(range(len(names)))
    recall = dict(zip(names, recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist()))
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "rare_recall": float(np.mean([recall[c] for c in rare])),
        "per_class_recall": recall,
    }


METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "rare_recall")


def _mean(runs: list[dict]) -> dict:
    out = {}
    for k in METRICS:
        values = [r[k] for r in runs]
        out[k], out[f"{k}_std"] = round(float(np.mean(values)), 4), round(float(np.std(values)), 4)
    out["per_class_recall"] = {c: round(float(np.mean([r["per_class_recall"][c] for r in runs])), 4)
                               for c in runs[0]["per_class_recall"]}
    return out


def evaluate(params: Params) -> dict:
    cfg = params.evaluate
    prepared_dir, accepted_dir = Path(params.paths.prepared), Path(params.paths.accepted)
    prepared = read_manifest(prepared_dir)
    accepted = read_manifest(accepted_dir)
    synth = accepted[accepted["source"] == "synthetic"]
    label_map = label_map_of(prepared)
    names = list(label_map)
    real = prepared[(prepared["split"] == "train") & (prepared["source"] == "real")]
    counts = {k: int((real["label"] == k).sum()) for k in names}
    rare = rare_classes(counts)
    x_real, y_real = _images(prepared_dir, prepared, real, label_map, "ingest")
    x_val, y_val = _images(prepared_dir, prepared, prepared[prepared["split"] == "val"], label_map, "ingest")
    x_test, y_test = _images(prepared_dir, prepared, prepared[prepared["split"] == "test"], label_map, "ingest")
    steps = cfg.epochs * math.ceil(len(real) / cfg.batch_size)
    seeds = [cfg.seed + r for r in range(cfg.repeats)]
    aug = cfg.augment

    device = pick_device(cfg.device)
    workers = cfg.loader_workers if cfg.loader_workers is not None else (0 if device.type == "cpu" else 4)

    def fit(x, y, seed, balanced):
        augment = classifier.classic_augment(aug.shift, aug.rotate, aug.scale, aug.hflip, seed)
        return classifier.fit(x, y, len(names), steps, cfg.batch_size, cfg.lr, cfg.width, seed,
                              balanced=balanced, augment=augment, device=device, workers=workers)

    def judge(model, x, y):
        return scores(y.numpy(), classifier.predict(model, x)[0], names, rare)

    test_runs: dict[str, list[dict]] = {arm: [] for arm in OTHER_ARMS}
    reference = None  # the first over-sampled real classifier: it does predict the rare classes
    oversampler = Smote(x_real, y_real)  # neighbours once; per seed, new images as row pairs
    for seed in progress(seeds, desc="evaluate: baselines", unit="seed"):
        x_sm, y_sm = oversampler.resample(seed)
        for arm, (x, y, balanced) in {"real_only": (x_real, y_real, False),
                                      "real_oversampled": (x_real, y_real, True),
                                      "smote": (x_sm, y_sm, False)}.items():
            model = fit(x, y, seed, balanced)
            test_runs[arm].append(judge(model, x_test, y_test))
            if reference is None and arm == "real_oversampled":
                reference = model

    # The synthetic arm, once per candidate share: val picks the share, test reports it.
    shares: dict[float, dict] = {}
    if len(synth):
        x_syn_all, y_syn_all = _images(accepted_dir, accepted, synth, label_map, "filter")
        for share in progress(sorted(set(cfg.synthetic_shares)), desc="evaluate: synthetic mixes", unit="mix"):
            kept = cap_synthetic(synth, counts, share)
            mask = synth["sample_id"].isin(kept["sample_id"]).to_numpy()
            x = Stack(x_real, x_syn_all.subset(mask))
            y = torch.cat([y_real, y_syn_all[torch.tensor(mask)]])
            val_runs, runs = [], []
            for seed in seeds:
                model = fit(x, y, seed, balanced=True)
                val_runs.append(judge(model, x_val, y_val))
                runs.append(judge(model, x_test, y_test))
            shares[share] = {"images": int(mask.sum()), "val": _mean(val_runs), "test": runs}
    means = {arm: _mean(r) for arm, r in test_runs.items()}
    chosen = None
    if shares:  # ties go to the smaller share: fewer synthetic images for the same result
        chosen = max(shares, key=lambda s: (shares[s]["val"][cfg.gate_metric], -s))
        means["synthetic"] = _mean(shares[chosen]["test"])

    gate = decide(means, cfg.gate_metric, cfg.min_gain, chosen, shares.get(chosen, {}).get("images", 0))
    metrics = {
        **means,
        "gate": gate,
        "rare_classes": rare,
        "mixes": {str(s): {"synthetic_images": v["images"], f"val_{cfg.gate_metric}": v["val"][cfg.gate_metric]}
                  for s, v in shares.items()},
        "synthetic_quality": _synthetic_quality(reference, x_syn_all, y_syn_all, names, x_real, y_real,
                                                x_test, y_test, fit, seeds[0]) if len(synth) else {"count": 0},
        "train_images": {"real": len(real), "synthetic_accepted": len(synth),
                         "synthetic_used": gate["synthetic_images"]},
        "classifier": {"steps": steps, "repeats": cfg.repeats, "seeds": seeds,
                       "augment": aug.model_dump()},
    }
    reports = Path(params.paths.reports)
    write_json(reports / "metrics.json", metrics)
    write_json(reports / GATE_FILE, gate)
    recall = pd.DataFrame({"class": names, **{arm: [means[arm]["per_class_recall"][c] if arm in means else None
                                                    for c in names] for arm in (*OTHER_ARMS, "synthetic")}})
    with atomic_file(reports / "per_class_recall.csv") as tmp:
        recall.to_csv(tmp, index=False)
    return metrics


def _synthetic_quality(model, x_syn, y_syn, names, x_real, y_real, x_test, y_test, fit, seed) -> dict:
    """Per-class quality (pipeline/quality.py) and CAS: a classifier trained on the synthetic
    images alone, tested on real test images of those classes, against the real-trained one."""
    per_class = quality.per_class(model, x_real, y_real, x_syn, y_syn, names)
    classes = torch.unique(y_syn)
    on_test = torch.isin(y_test, classes)
    out = {"count": len(x_syn), "per_class": per_class}
    if len(classes) >= 2 and on_test.any():
        cas_model = fit(x_syn, y_syn, seed, True)
        pred = classifier.predict(cas_model, x_test.subset(on_test.numpy()))[0]
        ref = classifier.predict(model, x_test.subset(on_test.numpy()))[0]
        truth = y_test[on_test].numpy()
        out["cas"] = round(float((pred == truth).mean()), 4)
        out["cas_real_reference"] = round(float((ref == truth).mean()), 4)
        out["cas_classes"] = [names[c] for c in classes.tolist()]
    return out


def summarize(r: dict) -> str:
    g = r["gate"]
    m = g["metric"]
    arms = ", ".join(f"{arm} {r[arm][m]:.4f}" for arm in ("real_only", "real_oversampled", "smote", "synthetic")
                     if arm in r)
    return f"{m}: {arms}; gate {'PASSED' if g['passed'] else 'CLOSED'}: {g['reason']}"
