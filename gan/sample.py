"""Sampling with recorded seeds, and discriminator scores.

An image depends only on (checkpoint, class, seed): each z is drawn from its own seeded
generator and G runs in eval mode (BatchNorm uses stored statistics), so batching
never changes a result and any image can be regenerated from its manifest row.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .models import Discriminator, Generator


def latents(seeds: Sequence[int], z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """One N(0, I) latent per seed; truncation t: entries beyond +-t redrawn from the seed's own
    stream until inside (BigGAN's truncation trick: images nearer the class's typical one)."""
    return torch.stack([_latent(int(s), z_dim, truncation) for s in seeds])


def _latent(seed: int, z_dim: int, truncation: float | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(z_dim, generator=g)
    while truncation is not None and (outside := z.abs() > truncation).any():
        z[outside] = torch.randn(int(outside.sum()), generator=g)
    return z


@torch.no_grad()
def sample_images(G: Generator, labels: Sequence[int], seeds: Sequence[int],
                  batch_size: int = 256, truncation: float | None = None) -> torch.Tensor:
    """Images in [-1, 1] as a float32 CPU tensor, one per (label, seed)."""
    device = next(G.parameters()).device
    out = []
    for i in range(0, len(seeds), batch_size):
        z = latents(seeds[i:i + batch_size], G.cfg.z_dim, truncation).to(device)
        y = torch.as_tensor(labels[i:i + batch_size], dtype=torch.long, device=device)
        out.append(G(z, y).float().cpu().contiguous())  # NCHW, whatever G computes in
    return torch.cat(out) if out else torch.empty(0, G.cfg.channels, G.cfg.img_size, G.cfg.img_size)


@torch.no_grad()
def score(D: Discriminator, images: torch.Tensor, labels: Sequence[int],
          batch_size: int = 512, conditional: bool = True) -> torch.Tensor:
    """D's logit for each image under its class: higher means 'more real'. No augmentation.
    conditional=False: only D's class-free realness term (see Discriminator.terms)."""
    device = next(D.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        y = torch.as_tensor(labels[i:i + batch_size], dtype=torch.long, device=device)
        realness, projection = D.terms(x, y)
        out.append((realness + projection if conditional else realness).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
