"""A fixed small CNN: the yardstick for evaluate, and the feature space for fidelity.

No Inception weights exist here (no downloads), so fidelity is measured in the
penultimate features of this classifier trained on the real data.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    def __init__(self, channels: int, n_classes: int, width: int = 32):
        super().__init__()

        def block(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(channels, width), block(width, 2 * width),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, steps: int, batch_size: int, lr: float,
        width: int, seed: int, balanced: bool = False) -> SmallCNN:
    """Train for a fixed number of steps (not epochs): a bigger training set gets no extra updates.

    balanced: draw batches class-balanced (random over-sampling, the classic baseline).
    """
    torch.manual_seed(seed)
    model = SmallCNN(x.shape[1], n_classes, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    weights = (1.0 / torch.bincount(y, minlength=n_classes).clamp(min=1).float())[y] if balanced \
        else torch.ones(len(y))
    model.train()
    for _ in range(steps):
        idx = torch.multinomial(weights, batch_size, replacement=True, generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: SmallCNN, x: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, penultimate features)."""
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(x[i:i + batch_size])
        feats.append(f)
        preds.append(model.head(f).argmax(1))
    if not preds:
        return np.empty(0, dtype=int), np.empty((0, model.head.in_features))
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    # A small ridge keeps sqrtm stable when a set has fewer images than feature dimensions.
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
