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

from .pixels import nchw_as_float


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


def fit(x, y: torch.Tensor, n_classes: int, steps: int, batch_size: int, lr: float,
        width: int, seed: int, balanced: bool = False, augment: Callable | None = None,
        device: torch.device | str = "cpu", workers: int = 0) -> SmallCNN:
    """Train for a fixed number of steps (not epochs): a bigger training set gets no extra updates.
    x: an image set (NCHW tensor, uint8 or float in [-1, 1], or pixels.Images / Stack), read a
    batch at a time through a DataLoader: `workers` processes read the rows ahead.

    balanced: draw batches class-balanced (random over-sampling, the classic baseline).
    augment: a batch transform (the classic augmentation every arm of evaluate shares), applied
    here, in order, so its seeded random stream does not depend on the number of workers.
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    model = SmallCNN(x.shape[1], n_classes, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    weights = (1.0 / torch.bincount(y, minlength=n_classes).clamp(min=1).float())[y] if balanced \
        else torch.ones(len(y))
    loader = torch.utils.data.DataLoader(
        _Rows(x, y), batch_sampler=_Draws(weights, batch_size, steps, seed), collate_fn=_as_is,
        num_workers=workers, pin_memory=device.type == "cuda", worker_init_fn=_one_thread,
        prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(0))
    model.train()
    for xb, yb in loader:
        if augment is not None:
            xb = augment(xb)
        loss = F.cross_entropy(model(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


class _Draws:
    """Each step's batch indices, drawn in order from one seeded generator (in the main process:
    a DataLoader runs its batch sampler there), so workers never change which rows a step sees."""

    def __init__(self, weights: torch.Tensor, batch_size: int, steps: int, seed: int):
        self.weights, self.batch_size, self.steps, self.seed = weights, batch_size, steps, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            yield torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)

    def __len__(self) -> int:
        return self.steps


class _Rows(torch.utils.data.Dataset):
    """A batch of rows of an image set, as [-1, 1] floats, with their labels."""

    def __init__(self, x, y: torch.Tensor):
        self.x, self.y = x, y

    def __getitems__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nchw_as_float(self.x[idx]), self.y[idx]

    def __len__(self) -> int:
        return len(self.y)


def _as_is(batch):
    return batch


def _one_thread(_):
    torch.set_num_threads(1)  # a worker reads rows; the main process's threads train


def fit_reference(x, y: torch.Tensor, n_classes: int, cfg, seed: int, device: torch.device | str = "cpu",
                  augment: Callable | None = None) -> SmallCNN:
    """The real-data yardstick (class-balanced, evaluate's settings, at least 200 steps): judges
    class agreement in filter (with the classic augmentation there, so that a class of three
    images is learnt as a class) and gives the feature space for train's validation metric. On
    the stage's device: at 300,000 images its 15 epochs are 70,000 steps."""
    steps = max(200, cfg.epochs * math.ceil(len(x) / cfg.batch_size))
    return fit(x, y, n_classes, steps, cfg.batch_size, cfg.lr, cfg.width, seed, balanced=True, augment=augment,
               device=device)


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
def predict(model: SmallCNN, x, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, penultimate features), on the model's device; x as in `fit`."""
    device = next(model.parameters()).device
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(nchw_as_float(x[i:i + batch_size]).to(device))
        feats.append(f.float().cpu())
        preds.append(model.head(f).argmax(1).cpu())
    if not preds:
        return np.empty(0, dtype=int), np.empty((0, model.head.in_features))
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    # A small ridge keeps sqrtm stable when a set has fewer images than feature dimensions.
    ridge = 1e-6 * np.eye(a.shape[1])

    def cov(x: np.ndarray) -> np.ndarray:  # one image has no spread (np.cov would be NaN)
        return np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]) if len(x) > 1 else np.zeros((x.shape[1],) * 2)

    cov_a, cov_b = cov(a) + ridge, cov(b) + ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
