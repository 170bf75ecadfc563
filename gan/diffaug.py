"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

With tens of images in a minority class, D memorizes them within a few hundred steps;
augmenting reals *and* fakes the same way (and backpropagating through it) prevents that
without leaking augmentations into the generator's output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    for name in policy:
        x = _AUGMENTS[name](x)
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
    """Shift each image by up to ratio*size pixels, filling with zeros."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    iy = torch.arange(h, device=x.device).view(1, h, 1) + dy
    ix = torch.arange(w, device=x.device).view(1, 1, w) + dx
    iy = iy.clamp(-1, h).expand(n, h, w) + 1  # index into a 1-pixel zero-padded image
    ix = ix.clamp(-1, w).expand(n, h, w) + 1
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, iy, ix].permute(0, 3, 1, 2).contiguous()


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
