"""SMOTE on pixels, as indices: each new image is a row pair and a step, made a batch at a time.

imbalanced-learn's SMOTE returns the whole resampled set as floats: for 300,000 images of
64 px RGB that is 15 GB before the first step. Here the same algorithm keeps, per new image,
(i, j, step): new = x_i + step * (x_j - x_i), with j one of i's k nearest images of its class.
Neighbours are found a block of the class's rows at a time (`quality.k_nearest`), and the
draws repeat imbalanced-learn's (per class a fresh RandomState(seed): `randint` over the
n x k neighbour table, then `uniform` steps; classes in its order), so the images are the
library's, to the last bit, where nearest neighbours are not tied (tests/test_bounded.py).
Differences by design: a duplicate image is a neighbour, the image itself never is (the
library drops its first column, which is the duplicate when one exists).
"""
from __future__ import annotations

import numpy as np
import torch

from ..store.pixels import Stack, nchw_as_float, subset
from .quality import k_nearest


def _flat(batch: torch.Tensor) -> np.ndarray:
    """uint8 or [-1, 1] images, flattened to float32 in [-1, 1] (the library's input)."""
    return nchw_as_float(batch).flatten(1).numpy()


class SmoteRows:
    """New images of one set: row i, row j of `x` and a step each; indexing makes them."""

    def __init__(self, x, i: np.ndarray, j: np.ndarray, step: np.ndarray):
        self.x, self.i, self.j, self.step = x, i, j, step
        self.shape = (len(i), *x.shape[1:])

    def __len__(self) -> int:
        return len(self.i)

    def __getitem__(self, idx) -> torch.Tensor:
        i, j, step = self.i[idx], self.j[idx], self.step[idx]
        xi, xj = _flat(self.x[torch.from_numpy(i)]), _flat(self.x[torch.from_numpy(j)])
        # The library's arithmetic: float32 difference, float64 step, back to float32.
        new = (xi + step[:, None] * (xj - xi)).astype(np.float32)
        return torch.from_numpy(new).view(len(i), *self.shape[1:])


class Smote:
    """SMOTE for one set: the neighbours are found once (the costly part, quadratic within a
    class), `resample(seed)` draws the new rows, as many times as evaluate has seeds."""

    def __init__(self, x, y: torch.Tensor, k_max: int = 5, strategy="auto"):
        """x: an image set in uint8 (Images or a tensor). k shrinks for classes with very few
        images; a class with a single image leaves the set unchanged. strategy: imbalanced-learn's
        sampling_strategy, over class indices ("auto": every class up to the largest)."""
        from imblearn.utils import check_sampling_strategy

        self.x, self.y = x, y
        counts = torch.bincount(y)
        self.k = int(min(k_max, counts[counts > 0].min().item() - 1))
        self.classes = []  # (label, how many to add, its members' rows, their neighbours' positions)
        if self.k < 1:
            return
        y_np = y.numpy()
        for label, n_new in check_sampling_strategy(strategy, y_np, "over-sampling").items():
            if n_new:
                members = np.flatnonzero(y_np == label)
                class_x = subset(x, members)
                self.classes.append((label, n_new, members, k_nearest(class_x, class_x, self.k, skip="self")[1]))

    def resample(self, seed: int):
        """(images, labels): the set's rows then the new ones, to the sampling strategy."""
        new, labels = self.new_rows(seed)
        if new is None:
            return self.x, self.y
        return Stack(self.x, new), torch.cat([self.y, labels])

    def new_rows(self, seed: int) -> tuple[SmoteRows | None, torch.Tensor]:
        """The new images alone (None: no class can be interpolated) and their labels."""
        if not self.classes:
            return None, torch.zeros(0, dtype=torch.long)
        parts_i, parts_j, parts_step, parts_y = [], [], [], []
        for label, n_new, members, nns in self.classes:
            rng = np.random.RandomState(seed)  # the library's: a fresh state per class
            drawn = rng.randint(low=0, high=nns.size, size=n_new)
            steps = rng.uniform(size=n_new)
            rows, cols = np.floor_divide(drawn, self.k), np.mod(drawn, self.k)
            parts_i.append(members[rows])
            parts_j.append(members[nns[rows, cols]])
            parts_step.append(steps)
            parts_y.append(np.full(n_new, label))
        new = SmoteRows(self.x, np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_step))
        return new, torch.from_numpy(np.concatenate(parts_y)).long()
