"""A fixed small CNN: the yardstick for evaluate, and the feature space for fidelity.

No Inception weights exist here (no downloads), so fidelity is measured in the
penultimate features of this classifier trained on the real data.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable

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


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Images kept as uint8 (a quarter of the memory) become [-1, 1] floats a batch at a time."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, steps: int, batch_size: int, lr: float,
        width: int, seed: int, balanced: bool = False, augment: Callable | None = None) -> SmallCNN:
    """Train for a fixed number of steps (not epochs): a bigger training set gets no extra updates.
    x: NCHW float in [-1, 1], or uint8 (converted a batch at a time).

    balanced: draw batches class-balanced (random over-sampling, the classic baseline).
    augment: a batch transform (the classic augmentation every arm of evaluate shares).
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
        xb = as_float(x[idx]) if augment is None else augment(as_float(x[idx]))
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def fit_reference(x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg, seed: int) -> SmallCNN:
    """The real-data yardstick (class-balanced, evaluate's settings, at least 200 steps): judges
    class agreement in filter and gives the feature space for train's validation metric."""
    steps = max(200, cfg.epochs * math.ceil(len(x) / cfg.batch_size))
    return fit(x, y, n_classes, steps, cfg.batch_size, cfg.lr, cfg.width, seed, balanced=True)


def classic_augment(shift: float, rotate: float, scale: float, hflip: bool, seed: int) -> Callable | None:
    """The augmentation a practitioner applies anyway (albumentations), as a batch transform
    on [-1, 1] tensors; None when every knob is off."""
    import cv2

    from .images import A  # albumentations, imported with its update check off

    transforms = []
    if shift or rotate or scale:
        transforms.append(A.Affine(translate_percent=(-shift, shift), rotate=(-rotate, rotate),
                                   scale=(1 - scale, 1 + scale), border_mode=cv2.BORDER_REFLECT_101, p=0.8))
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if not transforms:
        return None
    pipeline = A.Compose(transforms, seed=seed)

    def apply(x: torch.Tensor) -> torch.Tensor:
        imgs = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        out = np.stack([pipeline(image=img)["image"].reshape(img.shape) for img in imgs])
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    return apply


@torch.no_grad()
def predict(model: SmallCNN, x: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, penultimate features)."""
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(as_float(x[i:i + batch_size]))
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
