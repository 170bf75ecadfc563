"""Per-class quality of synthetic images, without Inception weights.

Features come from a small CNN (`classifier.py`) that the caller trained on the real train split.
- frechet: FID's formula per class, synthetic vs real train features of that class;
- precision / recall: k-NN manifolds (Kynkäänniemi et al. 2019): share of synthetic images
  inside the real images' k-NN balls, and of real images inside the synthetic ones';
- diversity: within-class mean pairwise feature distance, synthetic / real (1 = as varied);
- memorization: share of synthetic images within the class's copy radius (in pixels) of a real
  training image: closer than all but a small share of unseen real images are (`copy_radii`);
- label_agreement: the real-trained classifier assigns the image to its intended class.
Used by evaluate (the report) and filter (the near-copy guard is `near_copies`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ganaug.gan.health import spread as _spread

from . import classifier
from ..store.pixels import subset

K_NEAREST = 3


SAMPLE = 2000   # k-NN precision/recall on at most this many images a side (n x m distances)
CHUNK = 256     # query rows of a distance block
BLOCK = 4096    # reference rows of a distance block: memory CHUNK x BLOCK, whatever the set sizes


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double()).numpy()


def _pixels(x, a: int, b: int) -> torch.Tensor:
    """Rows a:b of an image set (a uint8 or [-1, 1] tensor, or pixels.Images), flattened, as
    float64 in [-1, 1]: only a block of a big set is ever read."""
    return classifier.nchw_as_float(x[a:b]).flatten(1).double()


def k_nearest(a, b, k: int = 1, skip: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances, positions), n x k: each image of a's k nearest images of b in pixels, nearest
    first, ties to the earlier position; a block of each set at a time. skip="self": a and b
    are one set and an image is not its own neighbour; skip="zero": exact copies do not count."""
    n = len(a)
    best_d, best_i = np.full((n, k), np.inf), np.zeros((n, k), dtype=np.int64)
    for i in range(0, n, CHUNK):
        q = _pixels(a, i, i + CHUNK)
        d_keep, i_keep = best_d[i:i + len(q)], best_i[i:i + len(q)]
        for j in range(0, len(b), BLOCK):
            ref = _pixels(b, j, j + BLOCK)
            d = torch.cdist(q, ref).numpy()
            if skip == "zero":
                d[d == 0] = np.inf
            elif skip == "self":
                own = np.arange(i, i + len(q))
                inside = (own >= j) & (own < j + len(ref))
                d[np.flatnonzero(inside), own[inside] - j] = np.inf
            if k == 1:  # the common case, without a sort
                col = d.argmin(axis=1)
                d_new = d[np.arange(len(d)), col][:, None]
                better = d_new < d_keep
                d_keep, i_keep = np.where(better, d_new, d_keep), np.where(better, j + col[:, None], i_keep)
                continue
            d_all = np.concatenate([d_keep, d], axis=1)
            i_all = np.concatenate([i_keep, np.broadcast_to(np.arange(j, j + len(ref)), d.shape)], axis=1)
            order = np.argsort(d_all, axis=1, kind="stable")[:, :k]
            d_keep, i_keep = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
        best_d[i:i + len(q)], best_i[i:i + len(q)] = d_keep, i_keep
    return best_d, best_i


def _nearest(a, b, skip_zero: bool = False) -> np.ndarray:
    """Per image of a, the distance to its nearest image of b (exact copies ignored when asked)."""
    return k_nearest(a, b, 1, "zero" if skip_zero else None)[0][:, 0]


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


SCALE_SAMPLE = 256  # images of a class its scale is measured on (evenly spaced): 32k pairs at most


def class_scale(real) -> float:
    """A class's typical distance: the median pixel distance between two of its images (0 with
    fewer than two). Unlike the nearest pair, it does not shrink as the class grows, and two or
    three images estimate it as well as four hundred do."""
    n = len(real)
    if n < 2:
        return 0.0
    at = np.unique(np.linspace(0, n - 1, min(n, SCALE_SAMPLE)).round().astype(int))
    x = _pixels(subset(real, at), 0, len(at))
    d = torch.cdist(x, x).numpy()
    return float(np.median(d[np.triu_indices(len(at), 1)]))


def class_copy_radii(folder, prepared, label_map: dict[str, int], quantile: float) -> tuple[dict[str, float], dict]:
    """Per class, the near-copy radius (`copy_radii`) over a prepared set's real train and val
    images (left on disk: `folder`'s pixel array, read a block at a time)."""
    from ..store.pixels import Images

    real = (prepared["source"] == "real").to_numpy()
    sets = {}
    for split in ("train", "val"):
        at = np.flatnonzero(real & (prepared["split"] == split).to_numpy())
        x, labels = Images(folder, len(prepared), at), prepared["label"].iloc[at].to_numpy()
        sets[split] = [x.subset(labels == k) for k in label_map]
    radii, info = copy_radii(sets["train"], sets["val"], quantile)
    return {k: float(r) for k, r in zip(label_map, radii)}, info


DONOR_HELD_OUT = 128  # held-out images a donor class lends to each size's calibration
DONOR_REPEATS = 4     # random subsets of a donor's training images per size (1 above 256 images)
MAX_DONORS = 16       # donor classes per size (a seeded choice among those large enough)


def size_grid(n: int) -> int:
    """The size a class of n training images is calibrated at: n itself up to 8, then the largest
    of 8 * sqrt(2)^k not above n (tau changes slowly with size: the grid bounds the work, and a
    smaller size's tau is a little larger, so a little stricter, never looser)."""
    if n <= 8:
        return n
    return int(8 * 2 ** (math.floor(2 * math.log2(n / 8) + 1e-9) / 2))


def copy_radii(train: list, held_out: list, quantile: float, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Per class, the distance to a real training image of the class below which an image is a
    near copy of it: radius_k = tau(n_k) * scale_k. scale_k is the class's `class_scale`, shrunk
    towards the median of every class's with weight (n-1)/(n+1) (one distance between two images
    is a poor scale: of two zebras that happen to be alike, say); tau(n) is the `quantile` of unseen
    real images' distance to the nearest of n training images of their class, in units of that
    class's scale, pooled over the classes that have at least n training images and held-out
    images, each cut to n at random. So "a copy" of a class of 3 images is: closer to one of them
    than all but that share of unseen images are to 3 images of their own class. The fewer a
    class's images, the farther an unseen one lies from them, the larger tau: a class cannot
    measure this itself at 3 images; it borrows it from classes that can, at its own size.
    train, held_out: per class, image sets (held-out: the val split; with none anywhere, each
    training image of a subset of n + 1 against the other n)."""
    rng = np.random.default_rng(seed)
    n_imgs = np.array([len(x) for x in train])
    own = np.array([class_scale(x) for x in train])
    pooled = float(np.median(own[n_imgs >= 2])) if (n_imgs >= 2).any() else 0.0
    # Two images give one distance: shrink a small class's own scale towards the pooled one.
    weight = np.clip((n_imgs - 1) / (n_imgs + 1), 0, 1)
    scales = weight * own + (1 - weight) * pooled
    with_val = [j for j, (x, y) in enumerate(zip(train, held_out)) if len(y) and len(x) >= 2 and scales[j] > 0]
    sizes = [size_grid(max(1, int(n))) for n in n_imgs]
    taus, counts = {}, {}
    for s in sorted(set(sizes)):
        ratios = []
        if with_val:
            donors = [j for j in with_val if len(train[j]) >= s]
            for j in sorted(rng.permutation(donors)[:MAX_DONORS]):
                y = subset(held_out[j], np.arange(min(len(held_out[j]), DONOR_HELD_OUT)))
                for _ in range(1 if len(train[j]) == s or s > 256 else DONOR_REPEATS):
                    pick = np.sort(rng.choice(len(train[j]), s, replace=False))
                    ratios.append(_nearest(y, subset(train[j], pick)) / scales[j])
        else:  # no val split anywhere: in subsets of s + 1 training images, each against the others
            donors = [j for j, x in enumerate(train) if len(x) >= s + 1 and scales[j] > 0]
            for j in sorted(rng.permutation(donors)[:MAX_DONORS]):
                for _ in range(DONOR_REPEATS):
                    pick = subset(train[j], np.sort(rng.choice(len(train[j]), s + 1, replace=False)))
                    ratios.append(k_nearest(pick, pick, 1, "self")[0][:, 0] / scales[j])
        pool = np.concatenate(ratios) if ratios else np.zeros(0)
        taus[s] = float(np.quantile(pool, quantile)) if len(pool) else 0.0
        counts[s] = len(pool)
    tau = np.array([taus[s] for s in sizes])
    return tau * scales, {"quantile": quantile, "pooled_scale": round(pooled, 4),
                          "tau_by_size": {s: round(t, 4) for s, t in taus.items()},
                          "distances_per_size": counts,
                          "calibrated_on": "held-out (val) images of the classes at least as large" if with_val
                          else "training images held out one at a time (no val images)"}


def nearest_pair(real) -> float:
    """The distance between the two closest distinct real images (0 with fewer than two).
    Image sets here and below: uint8 or [-1, 1] tensors, or pixels.Images."""
    if len(real) < 2:
        return 0.0
    d = _nearest(real, real, skip_zero=True)
    d = d[np.isfinite(d)]
    return float(d.min()) if len(d) else 0.0


def near_copies(real, fake, radius: float) -> np.ndarray:
    """Per fake: within `radius` (the class's copy radius, `copy_radii`) of some real image."""
    if not len(real) or not len(fake):
        return np.zeros(len(fake), dtype=bool)
    return _nearest(fake, real) < radius


def memorization(real, fake, radius: float) -> float:
    """Share of fakes that are near copies of a real image (the filter's definition)."""
    if not len(real) or not len(fake):
        return float("nan")
    return float(near_copies(real, fake, radius).mean())


def per_class(model, x_real, y_real: torch.Tensor, x_syn, y_syn: torch.Tensor, names: list[str],
              radii: dict[str, float]) -> dict[str, dict]:
    """Quality figures for each class that has synthetic images (x: image sets, as above;
    radii: each class's copy radius)."""
    pred, f_syn = classifier.predict(model, x_syn)
    _, f_real = classifier.predict(model, x_real)
    y_real, y_syn = y_real.numpy(), y_syn.numpy()
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
            "memorization": memorization(subset(x_real, np.flatnonzero(r)), subset(x_syn, np.flatnonzero(s)),
                                         radii[names[c]]),
        }
    return {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in d.items()} for k, d in out.items()}
