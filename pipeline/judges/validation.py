"""train's validation judge: it picks the checkpoint generate uses and drives early stopping."""
from __future__ import annotations

import numpy as np
import torch

from ganaug.gan import sample_images

from . import classifier
from ..plumbing.params import Params


class ValidationJudge:
    """Mean per-class Fréchet distance between G_ema's images and the real train images, in the
    features of a small classifier trained on those real images (no Inception weights here).
    Lower is better; it picks the checkpoint generate uses and drives early stopping. The same
    classifier's labels of G_ema's images tell whether G still follows the class (health)."""

    PER_CLASS = 32

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str], params: Params, device: torch.device):
        self.model = classifier.fit_reference(x, y, len(names), params.evaluate, params.train.seed, device)
        _, feats = classifier.predict(self.model, x)
        self.real = [feats[(y == c).numpy()] for c in range(len(names))]
        self.n_classes = len(names)

    @torch.no_grad()
    def score(self, G) -> tuple[float, list[float]]:
        """(mean per-class Fréchet distance, per class: the share of G's images of that class the
        judge labels as that class). An agreement near chance everywhere: G ignores the class."""
        labels = [c for c in range(self.n_classes) for _ in range(self.PER_CLASS)]
        seeds = [20_000 + i for i in range(self.PER_CLASS)] * self.n_classes
        predicted, feats = classifier.predict(self.model, sample_images(G, labels, seeds).cpu())
        k = self.PER_CLASS
        frechet = float(np.mean([classifier.frechet_distance(self.real[c], feats[c * k:(c + 1) * k])
                                 for c in range(self.n_classes)]))
        agreement = [float(np.mean(predicted[c * k:(c + 1) * k] == c)) for c in range(self.n_classes)]
        return frechet, agreement
