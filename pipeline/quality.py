"""Per-class quality of synthetic images, without Inception weights.

Features come from the fixed small CNN (`classifier.py`) trained here on the real train split.
- frechet: FID's formula per class, synthetic vs real train features of that class;
- precision / recall: k-NN manifolds (Kynkäänniemi et al. 2019): share of synthetic images
  inside the real images' k-NN balls, and of real images inside the synthetic ones';
- diversity: within-class mean pairwise feature distance, synthetic / real (1 = as varied);
- memorization: share of synthetic images nearer (in pixels) to some real training image
  than any two real training images of the class are to each other;
- label_agreement: the real-trained classifier assigns the image to its intended class.
Used by evaluate (the report) and filter (the near-copy guard is `near_copies`).
"""
from __future__ import annotations

import numpy as np
import torch

from ganaug.gan.health import spread as _spread

from . import classifier

K_NEAREST = 3


SAMPLE = 2000   # k-NN precision/recall on at most this many images a side (n x m distances)
CHUNK = 256     # rows of a distance matrix held at once: memory CHUNK x n, not n x n


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double()).numpy()


def _nearest(a: np.ndarray, b: np.ndarray, skip_zero: bool = False) -> np.ndarray:
    """Per row of a, the distance to its nearest row of b (ignoring exact zeros when asked:
    an image and itself), in chunks of rows."""
    out = np.empty(len(a))
    for i in range(0, len(a), CHUNK):
        d = _pairwise(a[i:i + CHUNK], b)
        if skip_zero:
            d[d == 0] = np.inf
        out[i:i + CHUNK] = d.min(axis=1)
    return out


def _sample(f: np.ndarray, n: int) -> np.ndarray:
    return f if len(f) <= n else f[np.sort(np.random.default_rng(0).choice(len(f), n, replace=False))]


def spread(f: np.ndarray, cap: int = 500) -> float:
    """Mean pairwise distance (gan.health's); a fixed subsample above `cap` (O(n^2) pairs)."""
    if len(f) > cap:
        f = f[np.random.default_rng(0).choice(len(f), cap, replace=False)]
    return _spread(torch.from_numpy(f).double())


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> tuple[float, float]:
    def radii(f):
        d = _pairwise(f, f)
        return np.sort(d, axis=1)[:, min(k, len(f) - 1)]  # column 0 is the point itself

    if len(real) <= 1 or len(fake) <= 1:
        return float("nan"), float("nan")
    real, fake = _sample(real, SAMPLE), _sample(fake, SAMPLE)  # an estimate above SAMPLE images
    d = _pairwise(fake, real)                      # fake x real
    precision = float((d <= radii(real)[None, :]).any(axis=1).mean())
    recall = float((d.T <= radii(fake)[None, :]).any(axis=1).mean())
    return precision, recall


def nearest_pair(real_px: np.ndarray) -> float:
    """The distance between the two closest distinct real images (0 with fewer than two)."""
    if len(real_px) < 2:
        return 0.0
    d = _nearest(real_px, real_px, skip_zero=True)
    d = d[np.isfinite(d)]
    return float(d.min()) if len(d) else 0.0


def near_copies(real_px: np.ndarray, fake_px: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Per fake: nearer to some real image than the two closest distinct real images are."""
    floor = nearest_pair(real_px) if floor is None else floor
    if not len(real_px) or not len(fake_px):
        return np.zeros(len(fake_px), dtype=bool)
    return _nearest(fake_px, real_px) < floor


def memorization(real_px: np.ndarray, fake_px: np.ndarray) -> float:
    """Share of fakes that are near copies of a real image."""
    if len(real_px) < 2 or not len(fake_px):
        return float("nan")
    return float(near_copies(real_px, fake_px).mean())


def per_class(model, x_real: torch.Tensor, y_real: torch.Tensor, x_syn: torch.Tensor, y_syn: torch.Tensor,
              names: list[str]) -> dict[str, dict]:
    """Quality figures for each class that has synthetic images."""
    pred, f_syn = classifier.predict(model, x_syn)
    _, f_real = classifier.predict(model, x_real)
    y_real, y_syn = y_real.numpy(), y_syn.numpy()
    px_real, px_syn = classifier.as_float(x_real).flatten(1).numpy(), classifier.as_float(x_syn).flatten(1).numpy()
    out = {}
    for c in np.unique(y_syn):
        s, r = y_syn == c, y_real == c
        precision, recall = knn_precision_recall(f_real[r], f_syn[s])
        out[names[c]] = {
            "count": int(s.sum()),
            "label_agreement": float((pred[s] == c).mean()),
            "frechet": classifier.frechet_distance(f_real[r], f_syn[s]) if r.sum() >= 2 and s.sum() >= 2 else None,
            "precision": precision, "recall": recall,
            "diversity": spread(f_syn[s]) / max(spread(f_real[r]), 1e-12) if r.sum() >= 2 else None,
            "memorization": memorization(px_real[r], px_syn[s]),
        }
    return {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in d.items()} for k, d in out.items()}
