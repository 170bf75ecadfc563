"""Evaluate's arms, in one table: what each trains on, how its folder is made, and whether it is
a baseline the synthetic arm must beat for the gate to open.

Every reader takes the arms from here: evaluate (fits and reports them), the gate (its
baselines), per_class_recall.csv and its dvc plot, the summaries, the Prefect markdown and the
benches. A new arm is one row: its name, what it is in each training regime, and its recipe.

Kept free of torch at import time (the flow and append import it); recipes import what they run.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ArmData:
    """What the recipes build from: evaluate's real train images and labels, the counts every
    plain folder is sized to (class index -> images to add), the SMOTE sampler, and for the
    synthetic arm the real + accepted images of the share being tried."""

    x_real: Any
    y_real: Any
    need: dict[int, int]
    smote: Any
    plain: bool
    fill: bool = False  # the synthetic arm's classes filled to the plan's counts with duplicates
    mix: tuple[Any, Any] | None = None


Recipe = Callable[[ArmData, int], tuple[Any, Any, bool]]  # (data, seed) -> (x, y, class-balanced batches)


@dataclass(frozen=True)
class Arm:
    name: str
    baseline: bool      # a folder the user would otherwise train on: the gate's synthetic arm must beat it
    plain: str          # what it trains on when the user's stage trains plainly on its folder
    balanced: str       # ... when it trains class-balanced with the classic augmentation
    recipe: Recipe
    reference: bool = False  # its first classifier judges the synthetic images' quality (it predicts rare classes)
    balances: bool = True    # its folder reaches the plan's counts (what the user asked for): not the real one

    def what(self, plain: bool) -> str:
        return self.plain if plain else self.balanced


def _real(d: ArmData, seed: int):
    return d.x_real, d.y_real, False


def _oversampled(d: ArmData, seed: int):
    if not d.plain:  # class-balanced batches over the real images
        return d.x_real, d.y_real, True
    import torch

    from ..store.pixels import Stack
    extra = oversample_rows(d.y_real, d.need, seed)
    return Stack(d.x_real, d.x_real.subset(extra)), torch.cat([d.y_real, d.y_real[torch.from_numpy(extra)]]), False


def _smote(d: ArmData, seed: int):
    x, y = d.smote.resample(seed)
    return x, y, False


def _synthetic(d: ArmData, seed: int):
    x, y = d.mix
    if not d.fill:
        return x, y, True
    import torch

    from ..store.pixels import Stack
    # What synthetic images did not bring, duplicates do: the over-sampled arm's own draws (a
    # prefix of them, the same seed), so the two folders differ only in the synthetic images.
    synthetic = Counter(y[len(d.y_real):].tolist())  # the mix is the real images, then the synthetic
    rest = {c: n - synthetic[c] for c, n in d.need.items() if n > synthetic[c]}
    extra = oversample_rows(d.y_real, rest, seed)
    return Stack(x, d.x_real.subset(extra)), torch.cat([y, d.y_real[torch.from_numpy(extra)]]), False


def fills_with_duplicates(params) -> bool:
    """Whether the augmented set's classes reach the plan's counts with duplicates of real images
    where synthetic ones fall short (append.fill): only for a plain training, and only in the set
    append builds (in place, a batch adds synthetic images only)."""
    return (params.append.fill != "none" and params.evaluate.user_training == "plain"
            and not params.append.target)


def oversample_rows(y, need: dict[int, int], seed: int):
    """Rows to repeat so that class c gains need[c] images: random over-sampling, with replacement,
    per class a fresh RandomState(seed) (imbalanced-learn's RandomOverSampler draws alike, from one
    state across classes)."""
    import numpy as np

    y_np, extra = np.asarray(y), []
    for c, n in need.items():
        members = np.flatnonzero(y_np == c)
        extra.append(members[np.random.RandomState(seed).randint(0, len(members), size=n)])
    return np.concatenate(extra) if extra else np.zeros(0, np.int64)


ARMS: tuple[Arm, ...] = (
    Arm("real", True, "the real train images as they are",
        "the real train images, unweighted, with the classic augmentation", _real, balances=False),
    Arm("oversampled", True, "the real train images, randomly duplicated to the plan's counts",
        "the real train images in class-balanced batches, with the classic augmentation", _oversampled,
        reference=True),
    Arm("smote", True, "the real train images and SMOTE interpolations (of pixels) to the plan's counts",
        "the same SMOTE folder, with the classic augmentation", _smote),
    Arm("synthetic", False, "the real train images and accepted synthetic ones up to the plan's counts (with "
        "append.fill=duplicates, duplicates of real ones where they fall short, as over-sampling draws them)",
        "the real train images and accepted synthetic ones in class-balanced batches, with the classic "
        "augmentation", _synthetic),
)
BY_NAME = {a.name: a for a in ARMS}
BASELINES = tuple(a.name for a in ARMS if a.baseline)   # what the synthetic arm must beat
BALANCING = tuple(a.name for a in ARMS if a.baseline and a.balances)  # what lands by default when it does not
CANDIDATE = "synthetic"                                   # the arm the gate judges: ganaug's images
NAMES = tuple(a.name for a in ARMS)
