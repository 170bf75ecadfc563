"""evaluate: do the accepted synthetic images help more than what users would do anyway?

Runs before append and decides the gate append acts on. Each arm's classifier trains as the
user's own stage would train on that arm's folder: `evaluate.arm_classifier.epochs` passes over
it (a folder of 2,400 images gets four times the steps of one of 600), a classifier of a user's
capacity (3 BatchNorm blocks), its learning curve on val recorded (metrics.json, the picture
reports/evaluate_curves.png); `evaluate.repeats` seeds each, tested on ganaug's real test split,
every figure as on a class-balanced test set (`evaluate.test_priors`). How the user's stage
trains (`evaluate.user_training`):

- plain     (default) the folder as it lands: shuffled, unweighted, no augmentation. Each arm is
            the folder the user would otherwise train on, sized to generate.sampling_strategy's
            counts over the real train split;
- balanced  class-balanced batches and the classic augmentation (albumentations,
            `evaluate.augment`).

The arms, what each trains on in either regime and which are the baselines, are one table:
pipeline/judges/arms.py (SMOTE: imbalanced-learn's algorithm and draws, kept as row pairs and made a
batch at a time, pipeline/judges/smote.py; the synthetic arm's images the first in seed order).

In both, at most `share` of a class's images are synthetic; the share is chosen on the val split
(over the classes it holds) among `evaluate.synthetic_shares`, never on test.

The gate (pipeline/judges/gate.py): the synthetic arm must beat the best other arm on
`evaluate.gate_metric`, and the lower end of the paired bootstrap interval of that gain (test
images and classifier seeds redrawn, pipeline/judges/evidence.py) must be above `evaluate.min_gain`.
A class with fewer than `evaluate.min_test_images` test images is undetermined: no per-class
verdict. gate.json says what the decision rests on (`rests_on`); append reads it and lands the
best arm's folder.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from .judges import classifier, evidence, quality
from .plumbing import plots
from .judges.arms import ARMS, BALANCING, BASELINES, BY_NAME, CANDIDATE, NAMES, ArmData, fills_with_duplicates
from .judges.gate import GATE_FILE, cap_synthetic, decide, decided_under
from .store.files import write_csv, write_json
from .store.manifest import class_counts, label_map_of, needed_per_class, read_manifest, real_train_rows
from .plumbing.params import Params, device as params_device, loader_workers
from .store.pixels import Images, Stack, read_prepared
from .judges.smote import Smote
from .store.provenance import check_made_from, identity


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


def test_scores(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], rare: list[int], balanced: bool) -> dict:
    """The test metrics of one classifier, defined as the bootstrap defines them (pipeline/
    evidence.py), under the test priors evaluate.test_priors names."""
    values = evidence.point(y_true, y_pred, len(names), rare, balanced)
    recall = values.pop("recall")
    return values | {"per_class_recall": dict(zip(names, recall.tolist()))}


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


@dataclass
class _Data:
    """What evaluate judges: ganaug's splits of the real images (left on disk, read a batch at a
    time), the accepted synthetic ones, and the plan's counts."""
    prepared: pd.DataFrame
    synth: pd.DataFrame            # the accepted synthetic rows
    label_map: dict[str, int]
    counts: dict[str, int]         # real train images per class
    need: dict[str, int]           # images every plain folder adds per class (the plan)
    rare: list[str]
    real: tuple                    # (images, labels) of the real train split
    val: tuple
    test: tuple
    syn: tuple                     # (None, None) when nothing was accepted
    judged: dict                   # the identities of the sets judged

    @property
    def names(self) -> list[str]:
        return list(self.label_map)


def evaluate(params: Params) -> dict:
    """The data, the classifiers, their training, the record: each arm's classifier trains as a
    user's stage trains on its folder (`evaluate.arm_classifier.epochs` passes over it, its
    learning curve on val recorded), is tested on the real test split, and the gate decides."""
    cfg = params.evaluate
    data = _data(params)
    seeds = [cfg.seed + r for r in range(cfg.repeats)]
    members, smote_neighbours, share_images = _members(cfg, data, seeds, fill=fills_with_duplicates(params))

    # The training: every classifier in one call (on a GPU as one network), to its own step count.
    device = params_device("evaluate.device", cfg.device)
    arm = cfg.arm_classifier
    training = classifier.Training(steps=1,  # a placeholder: every member brings its own (_member)
                                   batch_size=cfg.batch_size, lr=cfg.lr, width=arm.width, blocks=arm.blocks,
                                   device=device, workers=loader_workers(cfg.loader_workers, device))
    x_val, y_val = data.val
    models = dict(zip(members, classifier.fit_all(list(members.values()), len(data.names), training,
                                                  desc="evaluate: classifiers", curve_points=arm.curve_points,
                                                  val=(x_val, y_val) if len(y_val) else None)))

    # The record: test predictions, the share val chose, intervals, the decision.
    metrics = _record(params, data, seeds, members, models, share_images, smote_neighbours)
    reports = Path(params.paths.reports)
    write_json(reports / "metrics.json", metrics)
    write_json(reports / GATE_FILE, metrics["gate"])
    recall = pd.DataFrame({"class": data.names, **{
        name: [metrics["arms"][name]["per_class_recall"][c] if name in metrics["arms"] else None for c in data.names]
        for name in NAMES}})
    write_csv(recall, reports / "per_class_recall.csv")
    plots.learning_curves({name: m["training"] for name, m in metrics["arms"].items()}, reports / CURVES_PLOT)
    return metrics


def _data(params: Params) -> _Data:
    prepared_dir, accepted_dir = Path(params.paths.prepared), Path(params.paths.accepted)
    prepared = read_prepared(params)
    accepted = read_manifest(accepted_dir)
    judged = {"paths.prepared": identity(prepared_dir), "paths.accepted": identity(accepted_dir)}
    check_made_from(accepted_dir, {"paths.prepared": judged["paths.prepared"]}, rerun="filter")
    synth = accepted[accepted["source"] == "synthetic"]
    label_map = label_map_of(prepared)
    in_train = class_counts(prepared)
    counts = {k: in_train.get(k, 0) for k in label_map}

    def split(name):
        return _images(prepared_dir, prepared, prepared[prepared["split"] == name], label_map, "ingest")

    return _Data(prepared, synth, label_map, counts,
                 need=needed_per_class(counts, params.generate.sampling_strategy),
                 rare=rare_classes(counts),
                 real=_images(prepared_dir, prepared, real_train_rows(prepared), label_map, "ingest"),
                 val=split("val"), test=split("test"),
                 syn=_images(accepted_dir, accepted, synth, label_map, "filter") if len(synth) else (None, None),
                 judged=judged)


def _members(cfg, data: _Data, seeds: list[int], fill: bool) -> tuple[dict, int, dict[float, int]]:
    """The classifiers to train: each arm's folder per seed (pipeline/judges/arms.py), the synthetic arm
    once per share (val picks the share), and CAS (the synthetic images alone). Also the SMOTE
    neighbours used (0: a class has a single training image and SMOTE cannot interpolate, the arm
    is real only), and each share's synthetic images."""
    plain = cfg.user_training == "plain"
    (x_real, y_real), (x_syn, y_syn) = data.real, data.syn
    label_map, synth = data.label_map, data.synth
    smote = Smote(x_real, y_real, strategy={label_map[k]: data.counts[k] + n for k, n in data.need.items()})
    arm_data = ArmData(x_real, y_real, {label_map[k]: n for k, n in data.need.items()}, smote, plain, fill=fill)
    members = {(name, seed): _member(cfg, *BY_NAME[name].recipe(arm_data, seed), seed)
               for seed in seeds for name in BASELINES}
    share_images: dict[float, int] = {}
    for share in sorted(set(cfg.synthetic_shares)) if len(synth) else ():
        mask = synthetic_rows(synth, data.counts, share, data.need if plain else None)
        share_images[share] = int(mask.sum())
        arm_data.mix = (Stack(x_real, x_syn.subset(mask)), torch.cat([y_real, y_syn[torch.tensor(mask)]]))
        members |= {(share, seed): _member(cfg, *BY_NAME[CANDIDATE].recipe(arm_data, seed), seed) for seed in seeds}
    if len(synth) and len(torch.unique(y_syn)) >= 2 and torch.isin(data.test[1], torch.unique(y_syn)).any():
        members["cas", seeds[0]] = _member(cfg, x_syn, y_syn, True, seeds[0])
    return members, max(0, smote.k), share_images


def _predictions(cfg, data: _Data, seeds: list[int], models: dict, share_images: dict[float, int]):
    """Each arm's test predictions per seed (the synthetic arm's at the share val chose), each
    share's val figures, and the share chosen (None: no synthetic image)."""
    names, rare = data.names, data.rare
    (x_val, y_val), (x_test, _) = data.val, data.test

    def predict(key, x):
        return classifier.predict(models[key], x)[0]

    test_preds = {name: [predict((name, seed), x_test) for seed in seeds] for name in BASELINES}
    shares = {share: {"images": images,
                      "val": _mean([scores(y_val.numpy(), predict((share, s), x_val), names, rare, present_only=True)
                                    for s in seeds]) if len(y_val) else None,
                      "test": [predict((share, s), x_test) for s in seeds]}
              for share, images in share_images.items()}
    chosen = None
    if shares:  # ties go to the smaller share: fewer synthetic images for the same result
        chosen = max(shares, key=lambda s: (shares[s]["val"][cfg.gate_metric] if shares[s]["val"] else 0.0, -s))
        test_preds[CANDIDATE] = shares[chosen]["test"]
    return test_preds, shares, chosen


def _record(params: Params, data: _Data, seeds: list[int], members: dict, models: dict,
            share_images: dict[float, int], smote_neighbours: int) -> dict:
    """metrics.json: each arm's test figures and training, the share val chose, the decision."""
    cfg = params.evaluate
    names, rare = data.names, data.rare
    y_val, y_test = data.val[1], data.test[1]
    test_preds, shares, chosen = _predictions(cfg, data, seeds, models, share_images)
    # Each reported arm's classifiers: a baseline's own, the synthetic arm's at the chosen share.
    keys = {name: name for name in BASELINES} | ({CANDIDATE: chosen} if chosen is not None else {})

    y_true = y_test.numpy()
    test_counts = {n: int((y_true == data.label_map[n]).sum()) for n in names}
    undetermined = [n for n in names if test_counts[n] < cfg.min_test_images]
    balanced = cfg.test_priors == "balanced"
    rare_idx = [data.label_map[c] for c in rare]
    means = {name: _mean([test_scores(y_true, p, names, rare_idx, balanced) for p in preds])
             for name, preds in test_preds.items()}
    boot = evidence.bootstrap(y_true, {name: np.stack(p) for name, p in test_preds.items()}, len(names),
                              rare_idx, cfg.bootstrap, cfg.seed, balanced)
    for name, b in boot.items():
        for k in METRICS:
            means[name][f"{k}_interval"] = [round(float(v), 4) for v in evidence.interval(b[k], cfg.confidence)]
        means[name]["training"] = _training([models[keys[name], s] for s in seeds], members[keys[name], seeds[0]].steps)
    gate = decide(boot, names, metric=cfg.gate_metric, min_gain=cfg.min_gain, confidence=cfg.confidence,
                  share=chosen, images=shares.get(chosen, {}).get("images", 0), baselines=BASELINES,
                  candidate=CANDIDATE, undetermined=undetermined, measured_loss=cfg.measured_loss,
                  synthetic_classes=sorted(set(data.synth["label"])), balancing=BALANCING)
    gate["user_training"] = cfg.user_training
    gate["rests_on"] = _rests_on(test_counts, undetermined, seeds, means, cfg)
    gate["judged"] = data.judged  # append acts on the decision only for these very sets
    gate["decided_under"] = decided_under(params)  # ... and only under these params
    val_classes = sorted(names[c] for c in set(y_val.tolist()))
    plain = cfg.user_training == "plain"
    return {
        "arms": {a.name: {"what": a.what(plain), **means[a.name]} for a in ARMS if a.name in means},
        "gate": gate,
        "rare_classes": rare,
        "test_images_per_class": test_counts,
        "undetermined_classes": undetermined,
        "mixes": {str(s): {"synthetic_images": v["images"],
                           f"val_{cfg.gate_metric}": v["val"][cfg.gate_metric] if v["val"] else None}
                  for s, v in shares.items()},
        # What the share was chosen on: val holds only the classes that could lend it images.
        "mix_chosen_on": {"val_images": len(y_val), "val_classes": val_classes,
                          "rare_classes_in_val": [c for c in rare if c in val_classes],
                          "rule": "best val " + cfg.gate_metric if len(y_val) else "no val image: the smallest share"},
        "synthetic_quality": _synthetic_quality(params, data, models[BASELINE_REFERENCE, seeds[0]],
                                                models.get(("cas", seeds[0]))) if len(data.synth) else {"count": 0},
        "train_images": {"real": len(data.real[1]), "synthetic_accepted": len(data.synth),
                         "synthetic_used": gate["synthetic_images"]},
        "test_priors": cfg.test_priors,
        "classifier": {"passes": cfg.arm_classifier.epochs, "width": cfg.arm_classifier.width,
                       "blocks": cfg.arm_classifier.blocks, "repeats": cfg.repeats,
                       "seeds": seeds, "user_training": cfg.user_training,
                       "augment": None if plain else cfg.augment.model_dump(),
                       "test_images": len(y_true), "bootstrap": cfg.bootstrap,
                       "smote_neighbours": smote_neighbours},
    }


BASELINE_REFERENCE = next(a.name for a in ARMS if a.reference)  # its classifier predicts the rare classes
CURVES_PLOT = "evaluate_curves.png"


def _member(cfg, x, y, balanced: bool, seed: int) -> classifier.Member:
    """One arm's classifier: `arm_classifier.epochs` passes over its own folder, as the user's
    stage would train on it (a folder of 2,400 images gets four times the steps of one of 600),
    and at least `arm_classifier.min_steps`."""
    plain = cfg.user_training == "plain"
    aug = cfg.augment
    augment = None if plain else classifier.classic_augment(aug.shift, aug.rotate, aug.scale, aug.hflip, seed)
    steps = max(cfg.arm_classifier.min_steps, cfg.arm_classifier.epochs * math.ceil(len(y) / cfg.batch_size))
    return classifier.Member(x, y, seed, balanced and not plain, augment, steps=steps)


def _training(models: list, steps: int) -> dict:
    """How an arm's classifiers trained: steps, and the learning curve on val (mean over seeds).
    Converged: over the curve's last quarter the val loss fell by less than 10 % and the val
    macro-F1 ends within 0.05 of its best (val is small: its F1 moves by an image or two). None:
    no val image to tell."""
    curves = [m.curve for m in models if m.curve]
    out: dict = {"steps": steps}
    if not curves:
        return {**out, "curve": None, "converged": None}
    mean = {k: [round(float(np.mean(v)), 4) for v in zip(*(c[k] for c in curves))]
            for k in ("val_loss", "val_accuracy", "val_macro_f1")}
    loss, f1 = mean["val_loss"], mean["val_macro_f1"]
    before = loss[-1 - max(1, len(loss) // 4)] if len(loss) > 1 else loss[-1]
    converged = before - loss[-1] < 0.1 * before and max(f1) - f1[-1] <= 0.05
    return {**out, "curve": {"step": curves[0]["step"], **mean}, "converged": bool(converged)}


def _rests_on(test_counts: dict[str, int], undetermined: list[str], seeds: list[int], means: dict, cfg) -> dict:
    """What the decision rests on, said in gate.json: the test images (per class), the classes too
    thin to judge alone, the classifier seeds, and whether every arm's training converged."""
    return {"test_images": sum(test_counts.values()), "test_images_per_class": test_counts,
            "undetermined_classes": undetermined,
            "undetermined_rule": f"fewer than evaluate.min_test_images={cfg.min_test_images} test images",
            # The remedy, where there is one: ganaug cannot carve more test images out of a class of
            # a few without taking them from the GAN; the user's own test images are evidence.
            "more_evidence": (f"give test images of your own for class(es) {', '.join(undetermined)}: folders per split "
                              "(raw/train/<class>, raw/test/<class>) or a path,label,split table with split=test on "
                              "them and empty on the rest; ganaug then carves no test images out of those classes, and "
                              "the gate judges on yours") if undetermined else None,
            "classifier_seeds": seeds,
            "steps": {name: m["training"]["steps"] for name, m in means.items()},
            "converged": {name: m["training"]["converged"] for name, m in means.items()}}


def _synthetic_quality(params: Params, data: _Data, model, cas_model) -> dict:
    """Per-class quality (pipeline/judges/quality.py) and CAS: cas_model, trained on the synthetic images
    alone (None: fewer than two classes of them), tested on real test images of those classes,
    against the real-trained one (model)."""
    (x_real, y_real), (x_syn, y_syn), (x_test, y_test) = data.real, data.syn, data.test
    radii = quality.class_copy_radii(Path(params.paths.prepared), data.prepared, data.label_map,
                                     params.filter.copy_quantile)[0]
    per_class = quality.per_class(model, x_real, y_real, x_syn, y_syn, data.names, radii)
    classes = torch.unique(y_syn)
    on_test = torch.isin(y_test, classes)
    out = {"count": len(x_syn), "per_class": per_class}
    if cas_model is not None:
        pred = classifier.predict(cas_model, x_test.subset(on_test.numpy()))[0]
        ref = classifier.predict(model, x_test.subset(on_test.numpy()))[0]
        truth = y_test[on_test].numpy()
        out["cas"] = round(float((pred == truth).mean()), 4)
        out["cas_real_reference"] = round(float((ref == truth).mean()), 4)
        out["cas_classes"] = [data.names[c] for c in classes.tolist()]
    return out


def summarize(r: dict) -> str:
    g = r["gate"]
    m = g["metric"]
    arms = ", ".join(f"{arm} {v[m]:.4f}" for arm, v in r["arms"].items())
    rests = g.get("rests_on") or {}
    undetermined = rests.get("undetermined_classes")
    thin = (f"; undetermined (too few test images): {', '.join(undetermined)}: {rests.get('more_evidence')}"
            if undetermined else "")
    unconverged = [a for a, c in (rests.get("converged") or {}).items() if c is False]
    flat = f"; NOT CONVERGED: {', '.join(unconverged)} (raise evaluate.arm_classifier.epochs)" if unconverged else ""
    return (f"{m} ({g.get('user_training', 'plain')} training, {r.get('test_priors', 'split')} test priors, "
            f"{rests.get('test_images', '?')} test images): {arms}; gate {'PASSED' if g['passed'] else 'CLOSED'}: "
            f"{g['reason']}{thin}{flat}")
