"""The prepared set's pixels as one uint8 array on disk, memory-mapped.

Ingest writes `pixels.u8` (N x H x W x C uint8, row i = manifest row i) beside the PNGs, and
`pixels.json` (its shape). Training draws batches from it without decoding a PNG, and the
operating system pages in what a batch touches: memory is bounded by the batch, not by the
dataset (300,000 images of 64 px RGB are 3.7 GB on disk, 15 GB as float32 in memory). The
PNGs stay: they are what a person, DVC and any other tool read.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

PIXELS = "pixels.u8"
SHAPE = "pixels.json"


class PixelWriter:
    """Appends uint8 HxWxC images, in order, to `<folder>/pixels.u8`; `close` writes the shape."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.file = open(self.folder / PIXELS, "wb")
        self.count, self.shape = 0, None

    def append(self, arr: np.ndarray):
        if self.shape is None:
            self.shape = list(arr.shape)
        self.file.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
        self.count += 1

    def close(self):
        self.file.close()
        (self.folder / SHAPE).write_text(json.dumps({"count": self.count, "shape": self.shape or [0, 0, 0]}) + "\n")


def open_pixels(folder: str | Path, rows: int) -> np.memmap:
    """The memory-mapped N x H x W x C array, checked against the manifest's row count."""
    folder = Path(folder)
    data, shape_file = folder / PIXELS, folder / SHAPE
    if not data.is_file() or not shape_file.is_file():
        raise DataError(f"{folder}: no {PIXELS} (written by ingest since ganaug 0.2); re-run `ganaug ingest`")
    try:
        meta = json.loads(shape_file.read_text())
        count, (h, w, c) = int(meta["count"]), (int(v) for v in meta["shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{shape_file}: unreadable ({e}); re-run `ganaug ingest`") from None
    if count != rows or data.stat().st_size != count * h * w * c:
        raise DataError(f"{data}: holds {data.stat().st_size} bytes for {count} images of {h}x{w}x{c}, "
                        f"the manifest {rows} rows; the folder is damaged, re-run `ganaug ingest`")
    if count == 0:
        return np.zeros((0, h, w, c), np.uint8)
    return np.memmap(data, dtype=np.uint8, mode="r", shape=(count, h, w, c))


def to_float(u8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (the GAN's range), exactly as images.load_tensor."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
