"""Class-conditional SNGAN pair for small images (8 px and up, powers of two; measured at 16-32).

Generator: [z, class embedding] -> linear 4x4 -> residual up-blocks with class-conditional BatchNorm -> conv -> tanh.
Discriminator: residual down-blocks with spectral norm -> ReLU -> global sum pool ->
linear + projection of a class embedding (Miyato & Koyama 2018).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .hyper import GANConfig


# Activations in NHWC on every device: tensor cores want it, and so does oneDNN on the CPU (at
# 32 px a step in NCHW took 1.3x as long: bench/step_ops.py).
CHANNELS_LAST = torch.channels_last


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias are looked up per class."""

    def __init__(self, num_features: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(n_classes, num_features)
        self.bias = nn.Embedding(n_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x, y, strength: float = 1.0):
        """strength < 1 blends towards the class-free affine (gain 1, bias 0): transitional
        conditioning (Shahbazi et al. 2022) starts a run unconditional."""
        gain, bias = self.gain(y), self.bias(y)
        if strength != 1.0:
            gain, bias = 1 + strength * (gain - 1), strength * bias
        n, c = gain.shape
        return torch.addcmul(bias.view(n, c, 1, 1), self.bn(x), gain.view(n, c, 1, 1))

    def class_matrices(self, groups: int) -> list[torch.Tensor]:
        """Each class's gain deviation and bias as (groups x C/groups) matrices: what gSR's
        spectral penalty reads (Rangwani et al. 2022)."""
        n, c = self.gain.weight.shape
        groups = groups if c % groups == 0 else 1
        return [(self.gain.weight - 1).view(n, groups, c // groups), self.bias.weight.view(n, groups, c // groups)]


class GBlock(nn.Module):
    def __init__(self, ch: int, n_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(ch, n_classes)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(ch, n_classes)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, y, strength: float = 1.0):
        h = F.interpolate(F.relu(self.bn1(x, y, strength)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y, strength)))
        return h + F.interpolate(x, scale_factor=2, mode="nearest")


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        # The class enters twice: concatenated to z for the first layer (as in BigGAN-deep),
        # which conditions the layout within a few hundred steps, and through every CBN.
        self.embed = nn.Embedding(cfg.n_classes, cfg.z_dim)
        self.fc = nn.Linear(2 * cfg.z_dim, 4 * 4 * w)
        self.blocks = nn.ModuleList(GBlock(w, cfg.n_classes) for _ in range(cfg.n_resample))
        self.out_bn = nn.BatchNorm2d(w)
        self.out_conv = nn.Conv2d(w, cfg.channels, 3, padding=1)

    def forward(self, z, y, strength: float = 1.0):
        """strength: how much the class conditions the image (1 after training; see
        ConditionalBatchNorm2d)."""
        free = self.cfg.class_free_blocks  # low resolutions shared by all classes (Khorram et al. 2024)
        first = 0.0 if free else strength  # how much the class enters at the input
        e = self.embed(y) if first == 1.0 else first * self.embed(y)
        h = self.fc(torch.cat([z, e], dim=1)).view(z.shape[0], -1, 4, 4).contiguous(memory_format=CHANNELS_LAST)
        for i, block in enumerate(self.blocks):
            h = block(h, y, 0.0 if i < free else strength)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))

    def class_conditioned_norms(self):
        return [m for m in self.modules() if isinstance(m, ConditionalBatchNorm2d)]


class SpectralNorm(nn.Module):
    """W / sigma(W) (Miyato et al. 2018) as a parametrization, sigma estimated by a power iteration
    that `power_step` advances once per training step, not at every forward as torch's
    `spectral_norm` does: D runs three times a step, and each iteration is a dozen tiny kernels a
    layer (a GPU step is launch-bound). The same buffers (`_u`, `_v`) and initialization as
    torch's, so checkpoints load either way; forward reads u and v, never writes them, so a
    compiled or repeated forward keeps its backward intact."""

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        h, w = weight.flatten(1).shape
        self.register_buffer("_u", F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=eps))
        self.power_step(weight, iterations=15)

    @torch.no_grad()
    def power_step(self, weight: torch.Tensor, iterations: int = 1):
        mat = weight.flatten(1)
        for _ in range(iterations):
            u = torch.mv(mat, self._v)
            torch.div(u, torch.linalg.vector_norm(u).clamp_min_(self.eps), out=self._u)
            v = torch.mv(mat.t(), self._u)
            torch.div(v, torch.linalg.vector_norm(v).clamp_min_(self.eps), out=self._v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _SpectralScale.apply(weight, self._u, self._v)


class _SpectralScale(torch.autograd.Function):
    """W / sigma with sigma = u^T W v, differentiated through sigma as autograd would, in one
    backward node of six kernels instead of autograd's chain of about eleven:
    dL/dW = (g - <g, W/sigma> u v^T) / sigma."""

    @staticmethod
    def forward(ctx, weight, u, v):
        sigma = torch.vdot(u, torch.mv(weight.flatten(1), v))
        out = weight / sigma
        ctx.save_for_backward(out, sigma, u, v)
        return out

    @staticmethod
    def backward(ctx, g):
        out, sigma, u, v = ctx.saved_tensors
        along = (g * out).sum()
        return torch.addcmul(g, torch.outer(u, v).view_as(g), along, value=-1) / sigma, None, None


def spectral_norm(module: nn.Module) -> nn.Module:
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight.detach()))
    return module


class DBlock(nn.Module):
    """Residual down-block. The first block skips the leading ReLU (input is an image)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or downsample) else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.first:  # pool before the 1x1 conv: cheaper, as in SNGAN's optimized block
            s = F.avg_pool2d(x, 2) if self.downsample else x
            s = self.skip(s) if self.skip is not None else s
            return (F.avg_pool2d(h, 2) if self.downsample else h) + s
        s = self.skip(x) if self.skip is not None else x
        return F.avg_pool2d(h + s, 2) if self.downsample else h + s  # pooling is linear: pool once


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        blocks = [DBlock(cfg.channels, w, downsample=True, first=True)]
        blocks += [DBlock(w, w, downsample=True) for _ in range(cfg.n_resample - 1)]
        blocks += [DBlock(w, w, downsample=False)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = spectral_norm(nn.Linear(w, 1))
        self.embed = spectral_norm(nn.Embedding(cfg.n_classes, w))
        self._normed = [m for m in self.modules() if parametrize.is_parametrized(m, "weight")]

    @torch.no_grad()
    def power_step(self):
        """One power iteration for every spectral norm: once per training step (SpectralNorm)."""
        for m in self._normed:
            m.parametrizations.weight[0].power_step(m.parametrizations.weight.original)

    def forward(self, x, y, strength: float = 1.0):
        realness, projection = self.terms(x, y)
        return realness + projection if strength == 1.0 else realness + strength * projection

    def terms(self, x, y):
        """(class-free realness, class projection): the logit is their sum (Miyato & Koyama 2018).
        The first judges any image against all real images; the second, how well it matches
        its class's embedding, which for a class of a few images D has seen hundreds of times
        rewards closeness to exactly those."""
        h = F.relu(self.blocks(x.contiguous(memory_format=CHANNELS_LAST))).sum(dim=(2, 3))
        return self.fc(h).squeeze(1), (self.embed(y) * h).sum(dim=1)
