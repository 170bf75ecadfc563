"""Training health: is D still discriminating, does G still use z, does G still use the class?

Three failure modes end a GAN run without any error (see docs/architecture.md):
- a dead discriminator: its output stops depending on its input, the hinge D loss sits at
  2.0 and D(real) = D(fake); G gets no signal and the filter has nothing to rank;
- a collapsed generator: within a class, different z give one image;
- a generator that ignores the class: every class's images look alike (seen when a recipe
  was scaled up on a GPU: one texture for all four classes).
`margin` (mean D(real) - D(fake) on the training batch) watches the first, `spread` of a
fixed-z batch per class (against the real images' own spread) the second, and the share of
each class's images that a classifier of the real images labels as that class
(`label_agreement`, measured by the caller) the third.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from .models import Generator
from .sample import latents

DEAD_MARGIN = 0.05      # tail-mean D(real) - D(fake) below this: D no longer separates them
COLLAPSED_SPREAD = 0.3  # a class's fixed-z spread below this share of its real spread: collapse
IGNORED_CLASS = 0.25    # mean label agreement within this share of the way from chance to 1: class ignored
HEALTH_SEEDS = range(10_000, 10_016)  # 16 fixed latents per class, apart from the grid's seeds


SPREAD_SAMPLE = 2048  # pairwise distances of more images cost n^2 memory (60,000 images: 14 GB)


def spread(x: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the images of a set (flattened). Above
    SPREAD_SAMPLE images, estimated on evenly spaced ones (deterministic, no RNG drawn)."""
    n = len(x)
    if n < 2:
        return 0.0
    if n > SPREAD_SAMPLE:
        x, n = x[torch.linspace(0, n - 1, SPREAD_SAMPLE).long()], SPREAD_SAMPLE
    f = x.flatten(1).float()
    return float(torch.cdist(f, f).sum() / (n * (n - 1)))


@contextlib.contextmanager
def _frozen_batchnorm_stats(G: Generator):
    """Train-mode BatchNorm (batch statistics, as G trains) without touching running stats."""
    bns = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [(bn.momentum, bn.num_batches_tracked.clone()) for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, (momentum, tracked) in zip(bns, saved):
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def class_spreads(G: Generator, seeds: Sequence[int] = HEALTH_SEEDS) -> torch.Tensor:
    """Per class: spread of G's images for the same fixed latents (one value per class).

    Runs G as it trains (train-mode BatchNorm over all classes at once) and consumes no
    global random numbers, so watching a run never changes it.
    """
    n_classes = G.cfg.n_classes
    device = next(G.parameters()).device
    z = latents(list(seeds), G.cfg.z_dim).to(device).repeat(n_classes, 1)
    y = torch.arange(n_classes, device=device).repeat_interleave(len(seeds))
    was_training = G.training
    G.train()
    with _frozen_batchnorm_stats(G):
        imgs = G(z, y).float().cpu()
    G.train(was_training)
    k = len(seeds)
    return torch.tensor([spread(imgs[c * k:(c + 1) * k]) for c in range(n_classes)])


def verdict(history: Sequence[dict], class_names: Sequence[str]) -> dict:
    """Judge the last fifth of a run's history: {status, problems, margin, diversity...}.

    history rows hold `margin` and, where measured, `diversity_min` and `diversity_per_class`
    (fixed-z spread / real spread, per class).
    """
    if not history:
        return {"status": "unknown", "problems": ["no training history"]}
    tail = history[len(history) * 4 // 5:] or history[-1:]
    margin = sum(r["margin"] for r in tail) / len(tail)
    problems = []
    if margin < DEAD_MARGIN:
        problems.append(f"discriminator dead: mean D(real) - D(fake) = {margin:.3f} over the last fifth "
                        f"of training (below {DEAD_MARGIN}); D no longer tells real from fake")
    measured = [r for r in history if r.get("diversity_per_class")]
    diversity = None
    if measured:
        per_class = measured[-1]["diversity_per_class"]
        diversity = dict(zip(class_names, per_class))
        collapsed = [c for c, v in diversity.items() if v < COLLAPSED_SPREAD]
        if collapsed:
            problems.append(f"generator collapsed for class(es) {collapsed}: different z give near-identical "
                            f"images (spread below {COLLAPSED_SPREAD} of the real images')")
    labelled = [r for r in history if r.get("label_agreement")]
    agreement = None
    if labelled:
        agreement = dict(zip(class_names, labelled[-1]["label_agreement"]))
        chance = 1 / max(1, len(agreement))
        mean = sum(agreement.values()) / len(agreement)
        if len(agreement) > 1 and mean < chance + IGNORED_CLASS * (1 - chance):
            problems.append(f"generator ignores the class: a classifier of the real images labels {mean:.0%} of "
                            f"its images as the class asked for (chance: {chance:.0%}); the classes look alike")
    return {"status": "unhealthy" if problems else "ok", "problems": problems,
            "margin_last_fifth": round(margin, 4),
            "diversity_per_class": {c: round(v, 4) for c, v in diversity.items()} if diversity else None,
            "label_agreement_per_class": agreement}
