"""How sure a gain is: a paired bootstrap over test images and classifier seeds.

One or two test images of a class make any per-class figure a coin flip, and the spread of the
classifier over seeds does not see that: it retrains on the same test images. Here each
replicate redraws the test images (with replacement, so a class of one test image is sometimes
absent and sometimes counted twice) and the classifier seeds (with replacement), and every arm
is scored on the same draw: the gain of one arm over another is measured pairwise, image by
image, and its interval counts both kinds of noise. Numpy only: the gate module stays light.
"""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "rare_recall")
PER_CLASS = ("recall", "f1")  # B x K: per replicate and class


CHUNK = 100  # replicates drawn at once: memory CHUNK x test images, whatever the replicate count


def _one_hot(labels: np.ndarray, n_classes: int):
    from scipy import sparse

    return sparse.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), n_classes))


def confusion_parts(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, n_classes: int,
                    balanced: bool = False):
    """Per replicate (rows of weights: how often each test image is drawn) and class: true
    positives, true count (support) and predicted count. y_pred: one seed's predictions.

    balanced: as on a test set with the same number of images of every class (each image
    weighs 1 / its class's count in the replicate): a rare class's one test image counts as
    much as a common class's hundred, and a false alarm of the rare class from a common one
    costs what it would cost on a balanced test set, not what the split's proportions make it.
    Recall is unchanged; accuracy becomes balanced accuracy, F1 the balanced-test F1."""
    def per_class(hot):  # replicates x columns, through a sparse n x columns indicator
        return np.asarray((hot.T @ weights.T).T)

    if balanced:
        pairs = per_class(_one_hot(y_true * n_classes + y_pred, n_classes * n_classes))
        confusion = pairs.reshape(len(weights), n_classes, n_classes)           # B x true x predicted
        support = confusion.sum(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(support[:, :, None] > 0, confusion / support[:, :, None], 0.0)
        return np.diagonal(share, axis1=1, axis2=2).copy(), (support > 0).astype(float), share.sum(1)
    right = y_true == y_pred
    tp = per_class(_one_hot(np.where(right, y_true, 0), n_classes).multiply(right[:, None]).tocsr())
    return tp, per_class(_one_hot(y_true, n_classes)), per_class(_one_hot(y_pred, n_classes))


def metric_values(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray, rare: list[int]) -> dict:
    """Each metric per replicate from its confusion parts (sklearn's definitions, zero_division=0),
    macro figures over the classes the replicate holds: a redraw that misses a class's one test
    image leaves it out rather than scoring it 0 (on the data as it is, every class is there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        present = support > 0
        count = present.sum(1).clip(min=1)
        balanced = np.where(present.any(1), (recall * present).sum(1) / count, 0.0)
        macro_f1 = np.where(present.any(1), (f1 * present).sum(1) / count, 0.0)
        accuracy = tp.sum(1) / support.sum(1).clip(min=1e-12)
        rare_present = present[:, rare]
        rare_recall = np.where(rare_present.any(1), (recall[:, rare] * rare_present).sum(1)
                               / rare_present.sum(1).clip(min=1), 0.0) if rare else np.zeros(len(tp))
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "macro_f1": macro_f1,
            "rare_recall": rare_recall, "recall": recall, "f1": f1}


def bootstrap(y_true: np.ndarray, preds: dict[str, np.ndarray], n_classes: int, rare: list[int],
              replicates: int = 1000, seed: int = 0, balanced: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, each metric over `replicates` paired draws (B values; per-class recall and F1 B x K).
    preds[arm]: R x n predictions, one row per classifier seed, the same seeds' count for every
    arm. Replicate 0 is the data as it is (no redraw), so its values are the plain figures.
    balanced: every metric as on a class-balanced test set (confusion_parts)."""
    repeats = {len(p) for p in preds.values()}
    if len(repeats) != 1:
        raise ValueError(f"every arm needs the same number of seeds, got {sorted(repeats)}")
    r = repeats.pop()
    rng = np.random.default_rng(seed)
    n = len(y_true)
    seeds = np.vstack([np.arange(r), rng.integers(0, r, size=(replicates - 1, r))])   # B x R
    parts: dict[str, list[dict]] = {arm: [] for arm in preds}
    for start in range(0, replicates, CHUNK):
        b = min(CHUNK, replicates - start)
        weights = rng.multinomial(n, np.full(n, 1 / n), size=b) if n else np.zeros((b, 0))
        if start == 0:
            weights[0] = 1  # replicate 0: every test image once
        for arm, p in preds.items():
            per_seed = [metric_values(*confusion_parts(y_true, p[s], weights, n_classes, balanced), rare)
                        for s in range(r)]
            parts[arm].append({k: _seed_mean(per_seed, seeds[start:start + b], k) for k in (*METRICS, *PER_CLASS)})
    return {arm: {k: np.concatenate([c[k] for c in chunks]) for k in (*METRICS, *PER_CLASS)}
            for arm, chunks in parts.items()}


def point(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, rare: list[int], balanced: bool = False) -> dict:
    """The metrics of one seed's predictions on the test images as they are (no redraw)."""
    values = metric_values(*confusion_parts(y_true, y_pred, np.ones((1, len(y_true))), n_classes, balanced), rare)
    return {k: float(v[0]) for k, v in values.items() if k not in PER_CLASS} | {"recall": values["recall"][0]}


def _seed_mean(per_seed: list[dict], seeds: np.ndarray, key: str) -> np.ndarray:
    """Replicate b's value: the mean over its drawn seeds."""
    stacked = np.stack([m[key] for m in per_seed])            # R x B (x K)
    b = np.arange(seeds.shape[0])
    return np.mean([stacked[seeds[:, j], b] for j in range(seeds.shape[1])], axis=0)


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of a bootstrap distribution (replicate 0 included)."""
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail], axis=0)
    return lo, hi
