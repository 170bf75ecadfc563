"""`ganaug demo-data`: scikit-learn's digits (ships with it, no download) as an imbalanced
ImageFolder in paths.demo, upscaled to demo.size pixels. Rare classes keep demo.rare_fraction of their images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from sklearn.datasets import load_digits

from .images import save_png
from .io import atomic_dir
from .params import Params


def demo_data(params: Params) -> dict[str, int]:
    cfg = params.demo
    digits = load_digits()
    rng = np.random.default_rng(cfg.seed)
    counts = {}
    with atomic_dir(params.paths.demo) as tmp:
        for cls in range(10):
            idx = np.flatnonzero(digits.target == cls)
            if cls in cfg.rare_classes:
                idx = np.sort(rng.choice(idx, size=max(5, round(len(idx) * cfg.rare_fraction)), replace=False))
            for i in idx:
                img = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                if cfg.size != 8:
                    img = cv2.resize(img, (cfg.size, cfg.size), interpolation=cv2.INTER_CUBIC)
                save_png(img[:, :, None], Path(tmp) / str(cls) / f"digit-{i:04d}.png")
            counts[str(cls)] = len(idx)
    return counts
