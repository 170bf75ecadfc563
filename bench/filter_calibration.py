"""What the filter should accept and what it must reject, per class, under each rule measured.

    python bench/filter_calibration.py --work /tmp/tail     # after bench/tail.py --work /tmp/tail

Three sets of images per class, each put through every realness, class and novelty rule:
- fresh: real images of the class that ganaug never saw (the tail's kept-apart test images).
  A good filter accepts them: about 1 - filter.quantile of them by realness, nearly all by the
  others. This is the yardstick a class of 3 training images cannot give itself;
- copies: the class's real training images with +-3 grey levels of noise, what a memorizing
  generator makes. A good filter rejects them (the novelty rule's job);
- candidates: generate's first round, what the filter actually sees.

Realness: D's score of held-out real (val) images gives the threshold (its filter.quantile-th
quantile), either per class (shrunk towards the pooled quantile below filter.min_val_per_class
val images, as on main) or pooled over all classes; scored with D's full conditional logit or
with its class-free term alone. Novelty: main's nearest-pair floor, or the pooled copy radius
(quality.copy_radii). Class: the agreement judge trained as on main (balanced, no augmentation)
or with evaluate's classic augmentation. Seeds: as in params (0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge as plain  # noqa: E402
from bench.datasets import TAIL_COUNTS  # noqa: E402
from ganaug import gan  # noqa: E402
from ganaug.pipeline.judges import classifier, quality  # noqa: E402
from ganaug.pipeline.store.checkpoints import load_checkpoint, restore_sampler  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402
from ganaug.pipeline.plumbing.params import Params, load_params  # noqa: E402
from ganaug.pipeline.store.pixels import Images, nhwc_to_float, open_pixels  # noqa: E402


def thresholds(val_scores: np.ndarray, val_y: np.ndarray, n_classes: int, q: float, min_val: int, pooled_only: bool):
    pooled = float(np.quantile(val_scores, q))
    out = np.full(n_classes, pooled)
    if not pooled_only:
        for k in range(n_classes):
            own = val_scores[val_y == k]
            if len(own):
                w = min(1.0, len(own) / min_val)
                out[k] = w * float(np.quantile(own, q)) + (1 - w) * pooled
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--copy-quantiles", default="0.01,0.05,0.1")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    work = Path(args.work)
    out = work / "run"
    paths = [f"paths.{k}={out / v}" for k, v in Params().paths.model_dump().items() if k not in ("raw", "demo")]
    params = load_params(None, paths + [f"paths.raw={work / 'tail'}", "ingest.size=32"] + args.overrides)
    cfg = params.filter
    prepared = read_manifest(params.paths.prepared)
    lm = label_map_of(prepared)
    names = list(lm)
    n_cls = len(names)
    real = prepared["source"] == "real"
    rows = {s: np.flatnonzero((real & (prepared["split"] == s)).to_numpy()) for s in ("train", "val")}
    images = {s: Images(params.paths.prepared, len(prepared), r) for s, r in rows.items()}
    labels = {s: np.array([lm[v] for v in prepared["label"].iloc[r]]) for s, r in rows.items()}

    state = load_checkpoint(params.paths.model)
    _, D = restore_sampler(state, torch.device("cpu"), params.paths.model)

    def d_scores(u8_nhwc: np.ndarray, y: np.ndarray, conditional: bool) -> np.ndarray:
        return gan.score(D, nhwc_to_float(u8_nhwc), y.tolist(), conditional=conditional).numpy()

    val_u8 = images["val"][:].permute(0, 2, 3, 1).numpy()
    train_u8 = images["train"][:].permute(0, 2, 3, 1).numpy()

    # The three sets per class.
    size = params.ingest.size
    x_fresh, y_fresh, fresh_names = plain.read_folder(work / "tail-test", size, names)
    sets = {"fresh": (x_fresh[..., None], y_fresh)}
    rng = np.random.default_rng(0)
    noisy = np.clip(train_u8.astype(int) + rng.integers(-3, 4, train_u8.shape), 0, 255).astype(np.uint8)
    sets["copies"] = (noisy, labels["train"])
    cand = read_manifest(params.paths.candidates)
    cand_u8 = np.asarray(open_pixels(params.paths.candidates, len(cand), "generate"))  # row i: image i
    sets["candidates"] = (cand_u8, np.array([lm[v] for v in cand["label"]]))

    # Realness rules.
    rules = {}
    for conditional in (True, False):
        val_s = d_scores(val_u8, labels["val"], conditional)
        for pooled_only in (False, True):
            thr = thresholds(val_s, labels["val"], n_cls, cfg.quantile, cfg.min_val_per_class, pooled_only)
            name = f"D {'cond' if conditional else 'free'} {'pooled' if pooled_only else 'per-class'}"
            rules[name] = lambda x, y, c=conditional, t=thr: d_scores(x, y, c) >= t[y]

    # Novelty rules, per class.
    train_sets = [images["train"].subset(labels["train"] == k) for k in range(n_cls)]
    val_sets = [images["val"].subset(labels["val"] == k) for k in range(n_cls)]
    floors = np.array([quality.nearest_pair(x) for x in train_sets])

    def novel(radii):
        def check(x, y):
            ok = np.ones(len(y), bool)
            for k in np.unique(y):
                at = np.flatnonzero(y == k)
                ok[at] = ~quality.near_copies(train_sets[k], torch.from_numpy(x[at]).permute(0, 3, 1, 2), radii[k])
            return ok
        return check

    rules["copy: nearest pair"] = novel(floors)
    for q in (float(v) for v in args.copy_quantiles.split(",")):
        radii, info = quality.copy_radii(train_sets, val_sets, q)
        print(f"copy radius q={q}: {info}")
        rules[f"copy: radius q={q}"] = novel(radii)

    # Class rules.
    x_tr, y_tr = images["train"], torch.from_numpy(labels["train"])
    ev = params.evaluate
    steps = max(200, ev.epochs * int(np.ceil(len(y_tr) / ev.batch_size)))
    aug = ev.augment
    for tag, augment in (("judge plain", None),
                         ("judge augmented", classifier.classic_augment(aug.shift, aug.rotate, aug.scale, aug.hflip,
                                                                        ev.seed))):
        model = classifier.fit(x_tr, y_tr, n_cls, classifier.Training(steps, ev.batch_size, ev.lr, ev.width), ev.seed,
                               balanced=True, augment=augment)
        rules[tag] = lambda x, y, m=model: classifier.predict(m, torch.from_numpy(x).permute(0, 3, 1, 2))[0] == y

    # Pass rates.
    rates = {s: {r: np.zeros(n_cls) for r in rules} for s in sets}
    for s, (x, y) in sets.items():
        for r, rule in rules.items():
            ok = rule(x, y)
            for k in range(n_cls):
                rates[s][r][k] = ok[y == k].mean() if (y == k).any() else np.nan
    order = np.argsort([TAIL_COUNTS[int(n)] if n.isdigit() and int(n) < len(TAIL_COUNTS) else 0 for n in names])
    counts = np.bincount(labels["train"], minlength=n_cls)
    for s in sets:
        print(f"\n{s}: share passing each rule (classes from rarest; train images in brackets)")
        print(f"{'rule':<24}" + "".join(f"{names[k] + ' (' + str(counts[k]) + ')':>10}" for k in order))
        for r in rules:
            print(f"{r:<24}" + "".join(f"{rates[s][r][k]:>10.2f}" for k in order))


if __name__ == "__main__":
    main()
