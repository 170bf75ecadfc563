"""What generate and filter share: the checkpoint's
generator and discriminator as a sampler, the seed scheme, and writing images out.

Seeds: class c of generate.seed s draws from range((s * n_classes + c) * SEED_STRIDE, ...),
so one class's images never reuse another's seeds, and a top-up round continues where
the last stopped (no image is generated twice).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ganaug import gan

from ..store.checkpoints import check_label_map, checkpoint_id, load_checkpoint, restore_sampler
from ..store.images import save_png, to_uint8
from ..store.manifest import png_path, synthetic_id
from ..plumbing.errors import DataError
from ..plumbing.params import Params, device
from ..store.provenance import identity
from ..store.pixels import nhwc_to_float

SEED_STRIDE = 1_000_000_000  # seeds of one class and one generate.seed never meet another's


@dataclass
class Sampler:
    """The checkpoint's EMA generator and discriminator, ready to synthesize and score."""

    G: gan.Generator
    D: gan.Discriminator
    label_map: dict[str, int]
    ckpt_id: str
    batch_size: int
    truncation: float | None = None

    @classmethod
    def load(cls, params: Params, label_map: dict[str, int]) -> "Sampler":
        state = load_checkpoint(params.paths.model)
        check_label_map(state, label_map, params.paths.model)
        extra = state.get("extra") if isinstance(state.get("extra"), dict) else {}
        trained_on = (extra.get("made_from") or {}).get("paths.prepared") if isinstance(extra.get("made_from"), dict) else None
        if trained_on is not None and trained_on != identity(params.paths.prepared):
            raise DataError(f"{params.paths.model} was trained on another {params.paths.prepared} than the current "
                            f"one (recorded {trained_on}, now {identity(params.paths.prepared)}); re-run `ganaug train`")
        G, D = restore_sampler(state, device("train.device", params.train.device), params.paths.model)
        return cls(G, D, label_map, checkpoint_id(state), params.generate.batch_size, params.generate.truncation)

    def synthesize(self, label: str, seeds: list[int]) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows (synthetic manifest, no path yet) and uint8 NHWC images for one class."""
        y = [self.label_map[label]] * len(seeds)
        imgs = to_uint8(gan.sample_images(self.G, y, seeds, self.batch_size, self.truncation))
        # Score what is saved (8-bit), so a score can be reproduced from the file.
        scores = self.score(imgs, y)
        rows = pd.DataFrame({
            "sample_id": [synthetic_id(self.ckpt_id, label, s, self.truncation) for s in seeds],
            "label": label, "split": "train", "source": "synthetic",
            "d_score": scores, "seed": seeds, "checkpoint": self.ckpt_id,
        })
        return rows, imgs

    def score(self, imgs: np.ndarray, y: list[int]) -> np.ndarray:
        """D's class-free realness (the filter's realness test; class identity is the agreement
        judge's question, and D's class term rewards copies of a tiny class's few images)."""
        return gan.score(self.D, nhwc_to_float(imgs), y, conditional=False).numpy().astype(np.float64)


def seed_base(params: Params, label: str, label_map: dict[str, int]) -> int:
    return (params.generate.seed * len(label_map) + label_map[label]) * SEED_STRIDE


def seeds_for(params: Params, label: str, label_map: dict[str, int], start: int, n: int) -> list[int]:
    base = seed_base(params, label, label_map)
    return list(range(base + start, base + start + n))


def name_images(rows: pd.DataFrame) -> pd.DataFrame:
    """Synthetic rows with their path: the name the image has as a PNG (images/<class>/<id>.png),
    where it is written as one; in a folder kept as one pixel array (candidates) row i of the
    manifest is image i of pixels.u8."""
    return rows.assign(path=[png_path(lab, sid) for lab, sid in zip(rows["label"], rows["sample_id"])])


def write_images(rows: pd.DataFrame, imgs: np.ndarray, folder: Path) -> pd.DataFrame:
    rows = rows.copy()
    rows["path"] = [png_path(lab, sid) for lab, sid in zip(rows["label"], rows["sample_id"])]
    for rel, img in zip(rows["path"], imgs):
        save_png(img, folder / rel)
    return rows
