"""filter: keep candidates that look real, are not copies, are what they claim, and differ.

A candidate is accepted when, in seed order (not best-first, which would narrow diversity):
1. its discriminator score passes the class's threshold (filter.mode):
   - quantile: the filter.quantile-th quantile of D's scores on the class's held-out real
     (val) images. A class with fewer than filter.min_val_per_class val images cannot place
     a quantile on its own: its threshold is shrunk towards the same quantile over every
     class's val scores, weighted by how many it has;
   - absolute: one filter.threshold for every class; none: no threshold (the ablation);
2. (filter.reject_copies) it is not nearer, in pixels, to a real training image of its class
   than the two closest real training images of that class are to each other;
3. (filter.require_agreement) a classifier trained on the real train images assigns it to
   its class;
4. (filter.dedupe) it is not within half that distance of an image accepted before it.
Classes short of their target get more rounds, seeds continuing where they stopped, until
filter.max_rounds; a class whose acceptance rate falls below filter.min_acceptance stops
(hopeless: more candidates would burn compute for nothing) and the report says so.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import classifier, quality
from .errors import DataError
from .sampler import Sampler, needed_per_class, seed_base, seeds_for, write_images
from .images import load_tensor, to_uint8
from .files import atomic_dir, atomic_file, write_json
from .manifest import class_counts, label_map_of, make_manifest, read_manifest, write_manifest
from .params import Params
from .plots import class_grid, notice, score_histograms
from .progress import progress

MIN_JUDGED = 50     # candidates of a class seen before its acceptance rate may call it hopeless
DEDUPE_SHARE = 0.5  # accepted images are at least this share of the near-copy distance apart


def thresholds_for(params: Params, sampler: Sampler, prepared: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """(threshold per class, real val rows with their d_score)."""
    cfg = params.filter
    val = prepared[(prepared["split"] == "val") & (prepared["source"] == "real")].copy()
    root = Path(params.paths.prepared)
    x = load_tensor([root / p for p in val["path"]], params.ingest.channels)
    val["d_score"] = sampler.score(to_uint8(x), [sampler.label_map[v] for v in val["label"]]) if len(val) else []
    labels = list(sampler.label_map)
    if cfg.mode == "absolute":
        return {k: cfg.threshold for k in labels}, val
    if cfg.mode == "none" or not len(val):
        return {k: -math.inf for k in labels}, val
    pooled = float(np.quantile(val["d_score"], cfg.quantile))
    thresholds = {}
    for k in labels:
        own = val.loc[val["label"] == k, "d_score"]
        weight = min(1.0, len(own) / cfg.min_val_per_class)
        thresholds[k] = weight * float(np.quantile(own, cfg.quantile)) + (1 - weight) * pooled if len(own) else pooled
    return thresholds, val


class Guards:
    """Per class: the near-copy distance, the real images, and a classifier trained on them."""

    def __init__(self, params: Params, prepared: pd.DataFrame, label_map: dict[str, int]):
        cfg = params.filter
        root = Path(params.paths.prepared)
        real = prepared[(prepared["split"] == "train") & (prepared["source"] == "real")]
        x = load_tensor([root / p for p in real["path"]], params.ingest.channels)
        y = torch.tensor([label_map[v] for v in real["label"]])
        self.label_map = label_map
        self.real = {k: x[y == i].flatten(1).numpy() for k, i in label_map.items()}
        self.floor = {k: quality.nearest_pair(v) for k, v in self.real.items()}
        self.model = (classifier.fit_reference(x, y, len(label_map), params.evaluate, params.evaluate.seed)
                      if cfg.require_agreement else None)
        self.reject_copies, self.dedupe = cfg.reject_copies, cfg.dedupe

    def check(self, label: str, imgs: np.ndarray) -> pd.DataFrame:
        """Columns near_copy and disagrees for uint8 NHWC candidates of one class."""
        x = _to_float(imgs)
        near_copy = np.zeros(len(x), dtype=bool)
        if self.reject_copies:
            near_copy = quality.near_copies(self.real[label], x.flatten(1).numpy(), self.floor[label])
        disagrees = np.zeros(len(x), dtype=bool)
        if self.model is not None and len(x):
            disagrees = classifier.predict(self.model, x)[0] != self.label_map[label]
        return pd.DataFrame({"near_copy": near_copy, "disagrees": disagrees})

    def distinct(self, label: str, imgs: np.ndarray, limit: int, prior: np.ndarray | None = None) -> list[int]:
        """Indices (in order) of images kept greedily: none nearer than the class's floor to one
        kept before it or to an image accepted earlier (prior)."""
        if not self.dedupe:
            return list(range(min(limit, len(imgs))))
        x = _to_float(imgs).flatten(1)
        others = _to_float(prior).flatten(1) if prior is not None and len(prior) else x[:0]
        kept: list[int] = []
        for i in range(len(x)):
            if len(kept) >= limit:
                break
            pool = torch.cat([others, x[kept]])
            if not len(pool) or torch.cdist(x[i:i + 1], pool).min() >= DEDUPE_SHARE * self.floor[label]:
                kept.append(i)
        return kept


def _to_float(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def filter_candidates(params: Params) -> dict:
    cfg = params.filter
    prepared = read_manifest(params.paths.prepared)
    cand_dir = Path(params.paths.candidates)
    cand = read_manifest(cand_dir)
    label_map = label_map_of(prepared)
    unknown = set(cand["label"]) - set(label_map)
    if unknown:
        raise DataError(f"{cand_dir}: candidates for classes not in the data: {sorted(unknown)}")
    need = needed_per_class(class_counts(prepared), params.generate.sampling_strategy)
    sampler = Sampler.load(params, label_map)
    stale = set(cand["checkpoint"].dropna()) - {sampler.ckpt_id}
    if stale:
        raise DataError(f"{cand_dir}: candidates come from another checkpoint than {params.paths.model}; "
                        "re-run `ganaug generate`")
    thresholds, real_val = thresholds_for(params, sampler, prepared)
    guards = Guards(params, prepared, label_map)

    seen: dict[str, pd.DataFrame] = {}      # every candidate of a class, scored and checked
    accepted: dict[str, pd.DataFrame] = {k: cand.head(0) for k in need}
    accepted_imgs: dict[str, np.ndarray] = {}  # only accepted images stay in memory
    rounds, hopeless = {}, {}

    def take(k: str, rows: pd.DataFrame, imgs: np.ndarray | None):
        """Check one round's candidates of class k (seeds above every earlier round's, so taking
        them in seed order after the earlier accepted ones is the same greedy pass over all)."""
        rows = rows.sort_values("seed", kind="stable").reset_index(drop=True)
        scored = rows["d_score"].to_numpy() >= thresholds[k]
        if imgs is None:  # first round: read from the candidates folder only what passed the score
            paths = [cand_dir / p for p in rows.loc[scored, "path"]]
            loaded = to_uint8(load_tensor(paths, params.ingest.channels)) if paths else None
        else:
            loaded = imgs[scored]
        near_copy, disagrees = np.zeros(len(rows), bool), np.zeros(len(rows), bool)
        if loaded is not None and len(loaded):
            checks = guards.check(k, loaded)
            near_copy[scored], disagrees[scored] = checks["near_copy"], checks["disagrees"]
        rows = rows.assign(scored=scored, near_copy=near_copy, disagrees=disagrees)
        seen[k] = pd.concat([seen[k], rows], ignore_index=True) if k in seen else rows
        ok = (rows["scored"] & ~rows["near_copy"] & ~rows["disagrees"]).to_numpy()
        if not ok.any():
            return
        good_imgs = loaded[ok[scored]]
        prior = accepted_imgs.get(k)
        chosen = guards.distinct(k, good_imgs, need[k] - len(accepted[k]), prior)
        accepted[k] = pd.concat([accepted[k], rows[ok].iloc[chosen]], ignore_index=True)
        new = good_imgs[chosen]
        accepted_imgs[k] = new if prior is None else np.concatenate([prior, new])

    for k in progress(need, desc="filter: round 1", unit="class", leave=False):
        take(k, cand[cand["label"] == k], None)
        rounds[k] = 1

    with atomic_dir(params.paths.accepted) as tmp:
        for r in range(2, cfg.max_rounds + 1):
            short = {k: need[k] - len(accepted[k]) for k in need if len(accepted[k]) < need[k] and k not in hopeless}
            if not short:
                break
            for k, missing in progress(short.items(), desc=f"filter: round {r}", unit="class", leave=False):
                rate = len(accepted[k]) / max(1, len(seen[k]))
                if len(seen[k]) >= MIN_JUDGED and rate < cfg.min_acceptance:
                    hopeless[k] = (f"acceptance rate {rate:.1%} after {len(seen[k])} candidates is below "
                                   f"filter.min_acceptance={cfg.min_acceptance:.1%}; stopped generating")
                    continue
                n = min(math.ceil(missing / max(rate, cfg.min_acceptance, 0.05) * 1.2), 20 * missing)
                # Continue after the last seed tried, so no image is generated twice.
                start = int(seen[k]["seed"].max()) + 1 - seed_base(params, k, label_map) if len(seen[k]) else 0
                take(k, *sampler.synthesize(k, seeds_for(params, k, label_map, start, n)))
                rounds[k] = r
        for k in need:  # a class that ended below the floor is hopeless too, whatever the round
            rate = len(accepted[k]) / max(1, len(seen[k]))
            if k not in hopeless and len(accepted[k]) < need[k] and rate < cfg.min_acceptance:
                hopeless[k] = f"acceptance rate {rate:.1%} is below filter.min_acceptance={cfg.min_acceptance:.1%}"

        parts = []
        for k, rows in accepted.items():
            rows = rows.drop(columns=["scored", "near_copy", "disagrees"], errors="ignore")
            parts.append(write_images(rows, accepted_imgs[k], tmp) if len(rows) else rows)
        kept = make_manifest(pd.concat(parts, ignore_index=True) if parts else [])
        write_manifest(kept, tmp)

    report = _report(params, need, seen, accepted, thresholds, rounds, hopeless)
    reports = Path(params.paths.reports)
    if need:
        score_histograms(pd.concat(seen.values(), ignore_index=True), real_val,
                         {k: thresholds[k] for k in need}, reports / "filter_scores.png")
    else:
        notice(reports / "filter_scores.png", "no class needs synthetic images")
    if len(kept):
        _accepted_grid(params, kept)
    else:
        notice(reports / "accepted_samples.png", "no synthetic image passed the filter")
    return report


def _report(params, need, seen, accepted, thresholds, rounds, hopeless) -> dict:
    classes = {}
    for k in need:
        s = seen[k]
        classes[k] = {
            "needed": need[k], "generated": len(s), "passed_score": int(s["scored"].sum()),
            "near_copies": int((s["scored"] & s["near_copy"]).sum()),
            "classifier_disagrees": int((s["scored"] & ~s["near_copy"] & s["disagrees"]).sum()),
            "accepted": len(accepted[k]),
            "acceptance_rate": round(len(accepted[k]) / len(s), 4) if len(s) else None,
            "threshold": None if math.isinf(thresholds[k]) else round(thresholds[k], 5),
            "rounds": rounds[k], "reached_target": len(accepted[k]) >= need[k],
            "hopeless": hopeless.get(k),
        }
    total_seen = sum(c["generated"] for c in classes.values())
    report = {
        "mode": params.filter.mode,
        "quantile": params.filter.quantile if params.filter.mode == "quantile" else None,
        "accepted": sum(c["accepted"] for c in classes.values()),
        "needed": sum(need.values()),
        "acceptance_rate": round(sum(c["accepted"] for c in classes.values()) / total_seen, 4) if total_seen else None,
        "hopeless": sorted(k for k in classes if classes[k]["hopeless"]),
        "classes": classes,
    }
    reports = Path(params.paths.reports)
    write_json(reports / "filter.json", report)
    table = pd.DataFrame([{"label": k, **v} for k, v in classes.items()])
    with atomic_file(reports / "filter_classes.csv") as tmp:
        table.to_csv(tmp, index=False)
    return report


def _accepted_grid(params: Params, kept: pd.DataFrame, per_class: int = 8):
    root = Path(params.paths.accepted)
    rows = {}
    for label, group in kept.groupby("label"):
        x = load_tensor([root / p for p in group["path"].head(per_class)], params.ingest.channels)
        rows[str(label)] = to_uint8(x)
    class_grid(rows, Path(params.paths.reports) / "accepted_samples.png",
               "accepted synthetic images: one row per class")


def summarize(r: dict) -> str:
    rates = {k: c["acceptance_rate"] for k, c in r["classes"].items()}
    hopeless = f"; HOPELESS, stopped generating for {r['hopeless']}" if r.get("hopeless") else ""
    return f"accepted {r['accepted']}/{r['needed']} needed; acceptance per class {rates}{hopeless}"
