"""filter: keep candidates the discriminator scores as real enough; top up short classes.

Thresholds (filter.mode):
- quantile: per class, the filter.quantile-th quantile of D's scores on that class's
  held-out real (val) images: keep a candidate that looks at least as real as that.
- absolute: one filter.threshold for every class.
- none: keep everything (the ablation).
Candidates are taken in seed order (not best-first, which would narrow diversity).
Classes short of their target get more rounds, seeds continuing where they stopped,
until filter.max_rounds.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from .progress import progress

from .errors import DataError
from .generate import Sampler, class_counts, needed_per_class, seed_base, seeds_for, write_images
from .images import load_tensor, to_uint8
from .io import atomic_dir, atomic_file, link_or_copy, write_json
from .manifest import label_map_of, make_manifest, read_manifest, write_manifest
from .params import Params
from .plots import class_grid, notice, score_histograms


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
    if cfg.mode == "none":
        return {k: -math.inf for k in labels}, val
    return {k: float(np.quantile(val.loc[val["label"] == k, "d_score"], cfg.quantile))
            for k in labels if (val["label"] == k).any()}, val


def filter_candidates(params: Params) -> dict:
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

    seen = {k: cand[cand["label"] == k] for k in need}       # every candidate scored, per class
    accepted = {k: _passing(seen[k], thresholds[k]).head(need[k]) for k in need}
    rounds = {k: 1 for k in need}
    extra_imgs: dict[str, np.ndarray] = {}                     # images of later rounds, by sample_id

    with atomic_dir(params.paths.accepted) as tmp:
        for r in range(2, params.filter.max_rounds + 1):
            short = {k: need[k] - len(accepted[k]) for k in need if len(accepted[k]) < need[k]}
            if not short:
                break
            for k, missing in progress(short.items(), desc=f"filter: round {r}", unit="class", leave=False):
                rate = len(_passing(seen[k], thresholds[k])) / max(1, len(seen[k]))
                n = min(math.ceil(missing / max(rate, 0.05) * 1.2), 20 * missing)
                # Continue after the last seed tried, so no image is generated twice.
                start = int(seen[k]["seed"].max()) + 1 - seed_base(params, k, label_map) if len(seen[k]) else 0
                rows, imgs = sampler.synthesize(k, seeds_for(params, k, label_map, start, n))
                extra_imgs.update(zip(rows["sample_id"], imgs))
                seen[k] = pd.concat([seen[k], rows], ignore_index=True)
                accepted[k] = _passing(seen[k], thresholds[k]).head(need[k])
                rounds[k] = r
                keep = set(accepted[k]["sample_id"])  # hold only accepted images in memory
                for sid in rows["sample_id"]:
                    if sid not in keep:
                        extra_imgs.pop(sid)

        parts = []
        for k, rows in accepted.items():
            from_first = rows[rows["path"].notna()]
            for rel in from_first["path"]:
                link_or_copy(cand_dir / rel, tmp / rel, "copy")
            later = rows[rows["path"].isna()]
            if len(later):
                later = write_images(later, np.stack([extra_imgs[s] for s in later["sample_id"]]), tmp)
            parts += [from_first, later]
        kept = make_manifest(pd.concat(parts, ignore_index=True) if parts else [])
        write_manifest(kept, tmp)

    report = _report(params, need, seen, accepted, thresholds, rounds)
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


def _passing(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return rows[rows["d_score"] >= threshold].sort_values("seed", kind="stable")


def _report(params, need, seen, accepted, thresholds, rounds) -> dict:
    classes = {}
    for k in need:
        n_seen, n_pass = len(seen[k]), len(_passing(seen[k], thresholds[k]))
        classes[k] = {
            "needed": need[k], "generated": n_seen, "passed": n_pass, "accepted": len(accepted[k]),
            "acceptance_rate": round(n_pass / n_seen, 4) if n_seen else None,
            "threshold": None if math.isinf(thresholds[k]) else round(thresholds[k], 5),
            "rounds": rounds[k], "reached_target": len(accepted[k]) >= need[k],
        }
    total_seen = sum(c["generated"] for c in classes.values())
    report = {
        "mode": params.filter.mode,
        "quantile": params.filter.quantile if params.filter.mode == "quantile" else None,
        "accepted": sum(c["accepted"] for c in classes.values()),
        "needed": sum(need.values()),
        "acceptance_rate": round(sum(c["passed"] for c in classes.values()) / total_seen, 4) if total_seen else None,
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
