"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

With tens of images in a minority class, D memorizes them within a few hundred steps;
augmenting reals *and* fakes the same way (and backpropagating through it) prevents that
without leaking augmentations into the generator's output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

def diff_augment(x: torch.Tensor, policy: tuple[str, ...], p: torch.Tensor | None = None) -> torch.Tensor:
    """Each augmentation of the policy applied to every image, or, given p (a 0-d tensor on x's
    device: ADA's adaptive probability), to each image with probability p, drawn per image."""
    for name in policy:
        if p is None:
            x = _AUGMENTS[name](x)
        else:
            chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
            x = torch.where(chosen, _AUGMENTS[name](x), x)
    return x


def _color(x):
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    if x.shape[1] > 1:  # saturation only means something in colour
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x, ratio: float = 0.125):
    """Shift each image by up to ratio*size whole pixels, filling with zeros: one nearest-neighbour
    resampling (exact for whole pixels), a few kernels where a gather took a dozen."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    # affine_grid's translation is in half-images (2 / size a pixel), x first.
    dx = torch.randint(-sw, sw + 1, (n, 1), device=x.device) * (2.0 / w)
    dy = torch.randint(-sh, sh + 1, (n, 1), device=x.device) * (2.0 / h)
    identity = torch.eye(2, device=x.device).expand(n, 2, 2)
    theta = torch.cat([identity, torch.cat([dx, dy], 1).unsqueeze(2)], 2)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


def _cutout(x, ratio: float = 0.5):
    """Zero one random square of side ratio*size per image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}
