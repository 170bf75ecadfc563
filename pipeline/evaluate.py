"""evaluate: do the accepted synthetic images help more than what users would do anyway?

Runs before append and decides the gate append acts on. One fixed small CNN and the same number
of optimizer steps for every arm, `evaluate.repeats` seeds each, tested on ganaug's real test
split. The arms train the way the user's own stage trains on its folder (`evaluate.user_training`):

- plain     (default) the folder as it lands: shuffled, unweighted, no augmentation. Each arm is
            the folder the user would otherwise train on, sized to generate.sampling_strategy's
            counts over the real train split;
- balanced  class-balanced batches and the classic augmentation (albumentations,
            `evaluate.augment`).

The arms, what each trains on in either regime and which are the baselines, are one table:
pipeline/arms.py (SMOTE: imbalanced-learn's algorithm and draws, kept as row pairs and made a
batch at a time, pipeline/smote.py; the synthetic arm's images the first in seed order).

In both, at most `share` of a class's images are synthetic; the share is chosen on the val split
(over the classes it holds) among `evaluate.synthetic_shares`, never on test.

The gate (pipeline/gate.py): the synthetic arm must beat the best other arm on
`evaluate.gate_metric`, and the lower end of the paired bootstrap interval of that gain (test
images and classifier seeds redrawn, pipeline/evidence.py) must be above `evaluate.min_gain`.
Written to reports/gate.json; append reads it.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from . import classifier, evidence, quality
from .arms import ARMS, BASELINES, BY_NAME, CANDIDATE, NAMES, ArmData, fills_with_duplicates
from .gate import GATE_FILE, cap_synthetic, decide
from .files import write_csv, write_json
from .manifest import label_map_of, needed_per_class, read_manifest
from .params import Params, device as params_device
from .pixels import Images, Stack, read_prepared
from .smote import Smote
from .provenance import check_made_from, identity


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


def scores(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], rare: list[str],
           present_only: bool = False) -> dict:
    """present_only: macro figures over the classes y_true holds (val lacks the tiny classes,
    which lent it no image)."""
    labels = sorted(set(y_true.tolist())) if present_only else list(range(len(names)))
    recall = dict(zip(names, recall_score(y_true, y_pred, labels=list(range(len(names))), average=None,
                                          zero_division=0).tolist()))
    rare_here = [c for c in rare if names.index(c) in labels]
    with warnings.catch_warnings():  # val: a prediction of a class val lacks is just a miss
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced,
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "rare_recall": float(np.mean([recall[c] for c in rare_here])) if rare_here else 0.0,
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


def synthetic_rows(synth: pd.DataFrame, counts: dict[str, int], share: float, need: dict[str, int] | None):
    """Which accepted synthetic rows an arm trains on: at most `share` of a class synthetic and,
    for a plain folder (need given), no more than the class needs to reach its count."""
    kept = cap_synthetic(synth, counts, share)
    if need is not None:
        kept = pd.concat([rows.sort_values("seed", kind="stable").head(need.get(str(k), 0))
                          for k, rows in kept.groupby("label", sort=False)]) if len(kept) else kept
    return synth["sample_id"].isin(kept["sample_id"]).to_numpy()


def evaluate(params: Params) -> dict:

    cfg = params.evaluate
    plain = cfg.user_training == "plain"
    prepared_dir, accepted_dir = Path(params.paths.prepared), Path(params.paths.accepted)
    prepared = read_prepared(params)
    accepted = read_manifest(accepted_dir)
    judged = {"paths.prepared": identity(prepared_dir), "paths.accepted": identity(accepted_dir)}
    check_made_from(accepted_dir, {"paths.prepared": judged["paths.prepared"]}, rerun="filter")
    synth = accepted[accepted["source"] == "synthetic"]
    label_map = label_map_of(prepared)
    names = list(label_map)
    real = prepared[(prepared["split"] == "train") & (prepared["source"] == "real")]
    counts = {k: int((real["label"] == k).sum()) for k in names}
    rare = rare_classes(counts)
    # The counts every arm's folder is sized to (plain), over ganaug's train split.
    need = needed_per_class(counts, params.generate.sampling_strategy)
    need_idx = {label_map[k]: n for k, n in need.items()}
    x_real, y_real = _images(prepared_dir, prepared, real, label_map, "ingest")
    x_val, y_val = _images(prepared_dir, prepared, prepared[prepared["split"] == "val"], label_map, "ingest")
    x_test, y_test = _images(prepared_dir, prepared, prepared[prepared["split"] == "test"], label_map, "ingest")
    steps = cfg.epochs * math.ceil(len(real) / cfg.batch_size)
    seeds = [cfg.seed + r for r in range(cfg.repeats)]
    aug = cfg.augment

    device = params_device("evaluate.device", cfg.device)
    workers = cfg.loader_workers if cfg.loader_workers is not None else (0 if device.type == "cpu" else 4)

    def member(x, y, balanced, seed):
        augment = None if plain else classifier.classic_augment(aug.shift, aug.rotate, aug.scale, aug.hflip, seed)
        return classifier.Member(x, y, seed, balanced and not plain, augment)

    def predict(model, x):
        return classifier.predict(model, x)[0]

    # Every classifier evaluate needs, keyed by (arm or share, seed), trained in one call
    # (classifier.fit_all: on a GPU as one network).
    # SMOTE to the same final counts; neighbours found once, per seed new images as row pairs.
    oversampler = Smote(x_real, y_real, strategy={c: counts[names[c]] + n for c, n in need_idx.items()})
    data = ArmData(x_real, y_real, need_idx, oversampler, plain, fill=fills_with_duplicates(params))
    members = {(arm.name, seed): member(*arm.recipe(data, seed), seed)
               for seed in seeds for arm in (BY_NAME[a] for a in BASELINES)}
    # The synthetic arm, once per candidate share: val picks the share, test reports it.
    share_images: dict[float, int] = {}
    if len(synth):
        x_syn_all, y_syn_all = _images(accepted_dir, accepted, synth, label_map, "filter")
        for share in sorted(set(cfg.synthetic_shares)):
            mask = synthetic_rows(synth, counts, share, need if plain else None)
            share_images[share] = int(mask.sum())
            data.mix = (Stack(x_real, x_syn_all.subset(mask)), torch.cat([y_real, y_syn_all[torch.tensor(mask)]]))
            members.update({(share, seed): member(*BY_NAME[CANDIDATE].recipe(data, seed), seed) for seed in seeds})
        classes = torch.unique(y_syn_all)
        if len(classes) >= 2 and torch.isin(y_test, classes).any():  # CAS: synthetic images alone
            members["cas", seeds[0]] = member(x_syn_all, y_syn_all, True, seeds[0])
    models = dict(zip(members, classifier.fit_all(list(members.values()), len(names), steps, cfg.batch_size,
                                                  cfg.lr, cfg.width, device, workers, desc="evaluate: classifiers")))

    test_preds = {arm: [predict(models[arm, seed], x_test) for seed in seeds] for arm in BASELINES}
    reference = next(models[a.name, seeds[0]] for a in ARMS if a.reference)  # it does predict the rare classes
    shares: dict[float, dict] = {}
    for share, images in share_images.items():
        val_runs = [scores(y_val.numpy(), predict(models[share, seed], x_val), names, rare, present_only=True)
                    for seed in seeds] if len(y_val) else []
        shares[share] = {"images": images, "val": _mean(val_runs) if val_runs else None,
                         "test": [predict(models[share, seed], x_test) for seed in seeds]}
    chosen = None
    if shares:  # ties go to the smaller share: fewer synthetic images for the same result
        chosen = max(shares, key=lambda s: (shares[s]["val"][cfg.gate_metric] if shares[s]["val"] else 0.0, -s))
        test_preds[CANDIDATE] = shares[chosen]["test"]
    val_classes = sorted(names[c] for c in set(y_val.tolist()))

    y_true = y_test.numpy()
    means = {arm: _mean([scores(y_true, p, names, rare) for p in preds]) for arm, preds in test_preds.items()}
    boot = evidence.bootstrap(y_true, {arm: np.stack(p) for arm, p in test_preds.items()}, len(names),
                              [label_map[c] for c in rare], cfg.bootstrap, cfg.seed)
    for arm, b in boot.items():
        for k in METRICS:
            means[arm][f"{k}_interval"] = [round(float(v), 4) for v in evidence.interval(b[k], cfg.confidence)]
    gate = decide(boot, names, cfg.gate_metric, cfg.min_gain, cfg.confidence, chosen,
                  shares.get(chosen, {}).get("images", 0), BASELINES, CANDIDATE)
    gate["user_training"] = cfg.user_training
    gate["judged"] = judged  # append acts on the decision only for these very sets
    metrics = {
        "arms": {a.name: {"what": a.what(plain), **means[a.name]} for a in ARMS if a.name in means},
        "gate": gate,
        "rare_classes": rare,
        "mixes": {str(s): {"synthetic_images": v["images"],
                           f"val_{cfg.gate_metric}": v["val"][cfg.gate_metric] if v["val"] else None}
                  for s, v in shares.items()},
        # What the share was chosen on: val holds only the classes that could lend it images.
        "mix_chosen_on": {"val_images": len(y_val), "val_classes": val_classes,
                          "rare_classes_in_val": [c for c in rare if c in val_classes],
                          "rule": "best val " + cfg.gate_metric if len(y_val) else "no val image: the smallest share"},
        "synthetic_quality": _synthetic_quality(reference, models.get(("cas", seeds[0])), x_syn_all, y_syn_all,
                                                names, x_real, y_real, x_test, y_test,
                                                quality.class_copy_radii(prepared_dir, prepared, label_map,
                                                                         params.filter.copy_quantile)[0])
        if len(synth) else {"count": 0},
        "train_images": {"real": len(real), "synthetic_accepted": len(synth),
                         "synthetic_used": gate["synthetic_images"]},
        "classifier": {"steps": steps, "repeats": cfg.repeats, "seeds": seeds, "user_training": cfg.user_training,
                       "augment": None if plain else aug.model_dump(),
                       "test_images": len(y_true), "bootstrap": cfg.bootstrap,
                       # 0: a class has a single training image and SMOTE cannot interpolate (the arm is real only)
                       "smote_neighbours": max(0, oversampler.k)},
    }
    reports = Path(params.paths.reports)
    write_json(reports / "metrics.json", metrics)
    write_json(reports / GATE_FILE, gate)
    recall = pd.DataFrame({"class": names, **{arm: [means[arm]["per_class_recall"][c] if arm in means else None
                                                    for c in names] for arm in NAMES}})
    write_csv(recall, reports / "per_class_recall.csv")
    return metrics


def _synthetic_quality(model, cas_model, x_syn, y_syn, names, x_real, y_real, x_test, y_test, radii) -> dict:
    """Per-class quality (pipeline/quality.py) and CAS: cas_model, trained on the synthetic images
    alone (None: fewer than two classes of them), tested on real test images of those classes,
    against the real-trained one."""
    per_class = quality.per_class(model, x_real, y_real, x_syn, y_syn, names, radii)
    classes = torch.unique(y_syn)
    on_test = torch.isin(y_test, classes)
    out = {"count": len(x_syn), "per_class": per_class}
    if cas_model is not None:
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
    arms = ", ".join(f"{arm} {v[m]:.4f}" for arm, v in r["arms"].items())
    return f"{m} ({g.get('user_training', 'balanced')} training): {arms}; gate {'PASSED' if g['passed'] else 'CLOSED'}: {g['reason']}"
