"""`ganaug demo-data`: scikit-learn's digits (they ship with it: no download) made long-tailed.

Writes an ImageFolder (`<paths.demo>/<digit>/*.png`, upscaled to demo.size pixels) and an
`index.csv` (path,label,split) that fixes the split the way long-tail benchmarks do:
train and val keep only demo.rare_fraction of the rare classes (what a user has), the
test split stays balanced (so per-class recall of a rare class rests on ~45 images, not 4).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

from .store.images import save_png
from .store.files import atomic_dir
from .plumbing.params import Params

INDEX = "index.csv"
TEST_FRACTION, VAL_FRACTION = 0.25, 0.15


def demo_data(params: Params) -> dict[str, int]:
    cfg = params.demo
    digits = load_digits()
    rng = np.random.default_rng(cfg.seed)
    rows = []
    with atomic_dir(params.paths.demo) as tmp:
        for cls in range(10):
            idx = rng.permutation(np.flatnonzero(digits.target == cls))
            n_test, n_val = round(len(idx) * TEST_FRACTION), round(len(idx) * VAL_FRACTION)
            split = {"test": idx[:n_test], "val": idx[n_test:n_test + n_val], "train": idx[n_test + n_val:]}
            if cls in cfg.rare_classes:
                for name in ("train", "val"):
                    keep = max(3 if name == "train" else 1, round(len(split[name]) * cfg.rare_fraction))
                    split[name] = split[name][:keep]
            for name, members in split.items():
                for i in sorted(members):
                    img = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                    if cfg.size != 8:
                        img = cv2.resize(img, (cfg.size, cfg.size), interpolation=cv2.INTER_CUBIC)
                    rel = f"{cls}/digit-{i:04d}.png"
                    save_png(img[:, :, None], Path(tmp) / rel)
                    rows.append({"path": rel, "label": str(cls), "split": name})
        pd.DataFrame(rows).to_csv(Path(tmp) / INDEX, index=False)
    counts = pd.DataFrame(rows).query("split == 'train'")["label"].value_counts().sort_index()
    return {k: int(v) for k, v in counts.items()}


def summarize(r: dict) -> str:
    return f"wrote the digits demo; train images per class: {r}"
