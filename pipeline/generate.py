"""generate: how many images each class needs, then candidates with recorded seeds and D scores.

The number to generate follows imbalanced-learn's `sampling_strategy` for over-sampling
('not majority', 'minority', 'not minority', 'all', a float for two classes, or a dict
of final counts per class). First-round candidates are that number times
generate.oversample: the filter stage rejects some and tops up in later rounds.
"""
from __future__ import annotations

import math

import pandas as pd

from .files import atomic_dir
from .manifest import class_counts, label_map_of, make_manifest, read_manifest, write_manifest
from .params import Params
from .sampler import Sampler, needed_per_class, seeds_for, write_images


def generate(params: Params) -> dict:
    df = read_manifest(params.paths.prepared)
    label_map = label_map_of(df)
    need = needed_per_class(class_counts(df), params.generate.sampling_strategy)
    sampler = Sampler.load(params, label_map)
    parts = []
    with atomic_dir(params.paths.candidates) as tmp:
        for label, n in need.items():
            n_cand = math.ceil(n * params.generate.oversample)
            rows, imgs = sampler.synthesize(label, seeds_for(params, label, label_map, 0, n_cand))
            parts.append(write_images(rows, imgs, tmp))
        cand = make_manifest(pd.concat(parts) if parts else [])
        write_manifest(cand, tmp)
    return {"needed": need, "candidates": {k: int(v) for k, v in cand["label"].value_counts().items()},
            "checkpoint": sampler.ckpt_id}


def summarize(r: dict) -> str:
    return f"needed {r['needed']}; candidates {r['candidates']}"
