"""generate: how many images each class needs, then candidates with recorded seeds and D scores.

The number to generate follows imbalanced-learn's `sampling_strategy` for over-sampling
('not majority', 'minority', 'not minority', 'all', a float for two classes, or a dict
of final counts per class). First-round candidates are that number times
generate.oversample: the filter stage rejects some and tops up in later rounds.

The plan is cut into shards (class, first seed, count) of at most generate.shard_size
images, a multiple of generate.batch_size: memory stays bounded by a shard, and a shard is a
unit of work another process can do. Every image comes from its own seed and the batches
fall on the same boundaries however the shards are run, so the candidates are the same bit
for bit in one process (the CLI, `dvc repro`) or spread over workers (the Prefect flow with
generate.workers > 1, on a Dask cluster).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .store.files import atomic_dir
from .store.manifest import augmented_counts, label_map_of, make_manifest, needed_per_class, write_manifest
from .plumbing.params import Params
from .store.pixels import PixelWriter, part_file, read_prepared
from .store.provenance import identity
from .training.sampler import Sampler, name_images, seeds_for, write_images


@dataclass(frozen=True)
class Shard:
    index: int   # its place in the plan: the order its images take in pixels.u8
    label: str
    start: int   # the class's first seed offset of this shard
    count: int


def plan(params: Params, need: dict[str, int]) -> list[Shard]:
    g = params.generate
    size = math.ceil(g.shard_size / g.batch_size) * g.batch_size  # batches never straddle shards
    shards = []
    for label, n in need.items():
        total = math.ceil(n * g.oversample)
        shards += [Shard(len(shards) + i, label, start, min(size, total - start))
                   for i, start in enumerate(range(0, total, size))]
    return shards


def make_shard(params: Params, shard: Shard, label_map: dict[str, int], folder: str | Path,
               sampler: Sampler | None = None) -> pd.DataFrame:
    """Synthesize, score and write one shard's images into `folder`, as a raw part of the pixel
    array the stage joins (and as PNGs when generate.png asks); its manifest rows. A worker
    process loads the sampler itself; one process passes the one it has."""
    sampler = sampler or Sampler.load(params, label_map)
    rows, imgs = sampler.synthesize(shard.label, seeds_for(params, shard.label, label_map, shard.start, shard.count))
    part_file(folder, shard.index).write_bytes(np.ascontiguousarray(imgs).tobytes())
    return write_images(rows, imgs, Path(folder)) if params.generate.png else name_images(rows)


def in_process(params: Params, shards: list[Shard], shared: tuple, folder: Path, sampler: Sampler) -> list[pd.DataFrame]:
    return [make_shard(params, s, *shared, folder, sampler) for s in shards]


RunParts = Callable[[Params, list[Shard], tuple, Path, Sampler], list[pd.DataFrame]]


def generate(params: Params, run_parts: RunParts = in_process) -> dict:
    """run_parts runs the shards (make_shard(params, shard, label_map, folder)) and returns their
    rows in shard order (the Prefect flow passes one that maps them over Dask workers, which load
    the checkpoint themselves: stages.Parts)."""
    df = read_prepared(params)
    label_map = label_map_of(df)
    need = needed_per_class(augmented_counts(df), params.generate.sampling_strategy)
    sampler = Sampler.load(params, label_map)  # fails here, once, on a checkpoint that does not fit
    shards = plan(params, need)
    made_by = {"stage": "generate", "inputs": {"paths.prepared": identity(params.paths.prepared),
                                               "checkpoint": sampler.ckpt_id}}
    with atomic_dir(params.paths.candidates, made_by=made_by) as tmp:
        parts = run_parts(params, shards, (label_map,), tmp, sampler)
        # One pixel array in plan order, the manifest's rows in the same order.
        pixels = PixelWriter(tmp, (params.ingest.size, params.ingest.size, params.ingest.channels))
        for shard in shards:
            pixels.extend_from(part_file(tmp, shard.index))
        pixels.close()
        cand = make_manifest(pd.concat(parts, ignore_index=True) if parts else [])
        write_manifest(cand, tmp)
    return {"needed": need, "candidates": {k: int(v) for k, v in cand["label"].value_counts().items()},
            "checkpoint": sampler.ckpt_id, "shards": len(shards), "truncation": sampler.truncation}


def summarize(r: dict) -> str:
    return f"needed {r['needed']}; candidates {r['candidates']} ({r['shards']} shards)"
