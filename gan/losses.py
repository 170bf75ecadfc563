"""Hinge loss, LeCam regularization (Tseng et al. 2021), mode seeking (Mao et al. 2019), and
group spectral regularization of the class-conditional BatchNorms (gSR, Rangwani et al. 2022)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


class LeCam:
    """Keeps D's outputs near the moving averages of their opposite side: helps on tiny data.
    The averages live on the device (no step waits to read them)."""

    def __init__(self, device: torch.device | str = "cpu", decay: float = 0.99):
        self.decay = decay
        self.ema = torch.zeros(2, device=device)  # of D(real), D(fake)

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema.lerp_(torch.stack([real_logits.mean(), fake_logits.mean()]), 1 - self.decay)
        ema_real, ema_fake = self.ema
        return (F.relu(real_logits - ema_fake).pow(2).mean()
                + F.relu(ema_real - fake_logits).pow(2).mean())

    def state(self) -> list[float]:
        return self.ema.tolist()

    def load(self, values: list[float]):
        self.ema.copy_(torch.as_tensor([float(v) for v in values]))


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, half: int) -> torch.Tensor:
    """MSGAN: two latents of the same class should give images as far apart as the latents are.

    fake[:half] and fake[half:2*half] share labels; minimizing 1/ratio pushes G away from
    mapping different z to one image (within-class mode collapse).
    """
    a, b = fake[:half], fake[half:2 * half]
    ratio = (a - b).abs().mean(dim=(1, 2, 3)) / (z[:half] - z[half:2 * half]).abs().mean(dim=1)
    return 1.0 / (ratio.mean() + 1e-5)


def group_spectral(G, groups: int = 4) -> torch.Tensor:
    """gSR: the mean over classes and conditional BatchNorms of the largest singular value of each
    class's gain deviation and bias, grouped into a (groups x C/groups) matrix. A tail class whose
    few images D memorizes collapses through these few parameters (their spectra explode, Rangwani
    et al. 2022); penalizing the top singular value keeps its conditioning in the range of the others'."""
    mats = [m for norm in G.class_conditioned_norms() for m in norm.class_matrices(groups)]
    return torch.stack([torch.linalg.matrix_norm(m, ord=2).mean() for m in mats]).mean()
