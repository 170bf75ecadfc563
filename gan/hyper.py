"""What the GAN is (GANConfig: stored in every checkpoint) and how it trains (TrainHyper), with
their defaults: the one place they are written. Free of torch, so that pipeline/plumbing/params.py
(params.Train) reads its defaults from here without loading torch for `ganaug params`."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GANConfig:
    """Everything needed to rebuild the networks; stored inside every checkpoint."""

    img_size: int
    channels: int
    n_classes: int
    z_dim: int = 128
    width: int = 32
    class_free_blocks: int = 0  # G's first up-blocks (the low resolutions) see no class: UTLO-style

    def __post_init__(self):
        n = self.img_size
        if n < 8 or n & (n - 1):
            raise ValueError(f"img_size must be a power of two >= 8, got {n}")
        if not 0 <= self.class_free_blocks < self.n_resample:
            raise ValueError(f"class_free_blocks must be in [0, {self.n_resample}) at {n} px, "
                             f"got {self.class_free_blocks}")

    @property
    def n_resample(self) -> int:
        """Up-blocks in G (= down-blocks in D) between 4x4 and img_size."""
        return int(math.log2(self.img_size // 4))

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["class_free_blocks"]:  # written only when used: default checkpoints keep their identity
            del d["class_free_blocks"]
        return d


@dataclass(frozen=True)
class TrainHyper:
    lr_g: float = 2e-4
    lr_d: float = 8e-4
    betas: tuple[float, float] = (0.0, 0.999)
    n_dis: int = 2
    ema_decay: float = 0.999
    diffaug: tuple[str, ...] = ("translation",)
    lecam: float = 0.0
    mode_seeking: float = 0.1
    gsr: float = 0.0                 # weight of group spectral regularization (losses.group_spectral)
    # Transitional conditioning: unconditional until the first step, the class fading in linearly
    # until the second (Shahbazi et al. 2022), so the tail learns shapes from every class first.
    transition: tuple[int, int] | None = None
    # ADA (Karras et al. 2020): each augmentation applied with a probability p that rises while
    # more than ada_target of the real images get a positive D logit (D growing sure of them,
    # memorizing) and falls otherwise; None: every augmentation always (plain DiffAugment).
    ada_target: float | None = None
    ada_kimg: float = 100.0          # thousands of real images over which p may move from 0 to 1
    ada_cap: float = 0.8             # p never above this
