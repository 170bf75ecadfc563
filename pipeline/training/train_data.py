"""train's data: the real training images a batch at a time from the memory-mapped pixel array,
class-balanced, the same batches whatever the worker count or a resume; and the bounded
reference sample the validation judge and the diversity probe keep in memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..store.pixels import nhwc_to_float, one_thread, open_pixels

REFERENCE_BYTES = 256 * 2**20  # float images the judge and the diversity probe keep in memory


def reference_sample(y: torch.Tensor, bytes_per_image: int, seed: int) -> np.ndarray:
    """Indices of a class-stratified sample of at most REFERENCE_BYTES of float images, in
    their original order; a set that fits is taken whole (so small runs are unchanged)."""
    classes = torch.unique(y).tolist()
    cap = max(64, REFERENCE_BYTES // bytes_per_image // max(1, len(classes)))
    keep = []
    rng = np.random.default_rng(seed)
    for c in classes:
        members = np.flatnonzero(y.numpy() == c)
        keep.append(members if len(members) <= cap else rng.choice(members, cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


class RealBatches(torch.utils.data.Dataset):
    """Step s's batch of real training images: class-balanced indices drawn from (seed, s)
    alone, so a resumed run, or any number of loader workers, sees the same batches; pixels
    read from the memory-mapped array (opened lazily in each worker process)."""

    def __init__(self, folder: Path, n_rows: int, rows: np.ndarray, labels: torch.Tensor,
                 weights: torch.Tensor, batch_size: int, *, seed: int, rank: int = 0, world: int = 1):
        self.folder, self.n_rows, self.rows = folder, n_rows, rows
        self.labels, self.weights, self.batch_size, self.seed = labels, weights, batch_size, seed
        self.rank, self.world = rank, world
        self._pixels = None

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pixels is None:
            self._pixels = open_pixels(self.folder, self.n_rows, verify=False)  # train verified it
        g = torch.Generator().manual_seed(stream_seed(self.seed, step))
        # The whole step's batch (world x batch_size, as one process with that batch would
        # draw it); this process takes its slice.
        idx = torch.multinomial(self.weights, self.batch_size * self.world, replacement=True, generator=g)
        idx = idx[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return nhwc_to_float(self._pixels[self.rows[idx.numpy()]]), self.labels[idx]

    def __getstate__(self):  # workers reopen the memmap rather than receive a copy of it
        return {**self.__dict__, "_pixels": None}


def batch_loader(batches: RealBatches, steps: range, workers: int, device: torch.device):
    """The batches of `steps`, in order, prefetched by `workers` processes (params.loader_workers).
    Its own seeded generator: building it must not move torch's global RNG."""
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=steps, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=one_thread,
        generator=torch.Generator().manual_seed(0))


def stream_seed(seed: int, stream: int) -> int:
    """A seed of its own for each random stream drawn from one params seed (each step's batch,
    each process's latents): far apart, so no two streams of nearby seeds coincide."""
    return seed * 1_000_003 + stream
