"""A folder's pixels as one uint8 array on disk, memory-mapped.

Ingest (the prepared set) and filter (the accepted synthetic images) write `pixels.u8`
(N x H x W x C uint8, row i = manifest row i) beside the PNGs, and `pixels.json` (its shape).
Training, filter and evaluate read rows from it without decoding a PNG, and the operating
system pages in what a batch touches: memory is bounded by the batch, not by the dataset
(300,000 images of 64 px RGB are 3.7 GB on disk, 15 GB as float32 in memory). The PNGs stay:
they are what a person, DVC and any other tool read.

`Images` stands in for an N x C x H x W uint8 tensor of such rows (`len`, `shape`, `x[idx]`,
`x[a:b]`) and reads only the rows asked for; `Stack` puts several sets end to end.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..plumbing.errors import DataError
from .files import check_own_file, check_unchanged, own_record
from .manifest import read_manifest

PIXELS = "pixels.u8"
SHAPE = "pixels.json"


class PixelWriter:
    """Appends uint8 HxWxC images, in order, to `<folder>/pixels.u8`; `close` writes the shape
    (`shape`: what an empty set records)."""

    def __init__(self, folder: Path, shape: tuple[int, int, int] | None = None):
        self.folder = Path(folder)
        self.file = open(self.folder / PIXELS, "wb")
        self.count, self.shape = 0, list(shape) if shape else None

    def append(self, arr: np.ndarray):
        """One HxWxC image."""
        self.extend(arr[None])

    def extend(self, arrs: np.ndarray):
        """N x H x W x C images."""
        if self.shape is None:
            self.shape = list(arrs.shape[1:])
        self.file.write(np.ascontiguousarray(arrs, dtype=np.uint8).tobytes())
        self.count += len(arrs)

    def extend_from(self, part: Path):
        """The images of a raw part file (another process wrote them), which is then removed."""
        with open(part, "rb") as f:
            shutil.copyfileobj(f, self.file)
        self.count += os.path.getsize(part) // int(np.prod(self.shape))
        os.unlink(part)

    def close(self):
        self.file.close()
        (self.folder / SHAPE).write_text(json.dumps({"count": self.count, "shape": self.shape or [0, 0, 0]}) + "\n")


def part_file(folder: str | Path, index: int) -> Path:
    """A raw part of a folder's pixel array, written by one worker's unit of work (a shard, a
    class) and joined in order by PixelWriter.extend_from."""
    return Path(folder) / f"pixels-{index}.part"


def check_format(folder: str | Path, size: int, channels: int, writer: str = "ingest"):
    """The folder's images have the size and channels the params say (ingest.size,
    ingest.channels): a stage run with other params than its inputs were made with would
    write damaged images, or read them wrong, and say nothing."""
    shape_file = Path(folder) / SHAPE
    try:
        h, w, c = (int(v) for v in own_record(shape_file)["shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # open_pixels names what is wrong with it
    if (h, w, c) != (size, size, channels) and (h, w, c) != (0, 0, 0):
        raise DataError(f"{folder} holds {h}x{w} images with {c} channel(s), but ingest.size={size} and "
                        f"ingest.channels={channels}: these params are not the ones it was made with. Use "
                        f"those, or re-run `ganaug {writer}` (and the stages after it) with the new ones")


def open_pixels(folder: str | Path, rows: int, writer: str = "ingest", *, verify: bool = True) -> np.memmap:
    """The memory-mapped N x H x W x C array, checked against the manifest's row count
    (`writer`: the stage that writes the folder, named in the error) and, with verify, against
    its sealed hash. verify=False: a worker reopening an array its parent process has verified
    (a spawned worker would otherwise hash the whole file again)."""
    folder = Path(folder)
    data, shape_file = folder / PIXELS, folder / SHAPE
    if not (data.exists() or data.is_symlink()) or not (shape_file.exists() or shape_file.is_symlink()):
        raise DataError(f"{folder}: no {PIXELS} (ganaug {writer} writes it); re-run `ganaug {writer}`")
    # The images every later stage, and the augmented set, are made of: never a link out of the folder.
    check_own_file(data, folder, done="nothing was read")
    if verify:
        check_unchanged(folder, PIXELS, f"`ganaug {writer}`")
    try:
        meta = own_record(shape_file)
        count, (h, w, c) = int(meta["count"]), (int(v) for v in meta["shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{shape_file}: unreadable ({e}); re-run `ganaug {writer}`") from None
    if count != rows or data.stat().st_size != count * h * w * c:
        raise DataError(f"{data}: holds {data.stat().st_size} bytes for {count} images of {h}x{w}x{c}, "
                        f"the manifest {rows} rows; the folder is damaged, re-run `ganaug {writer}`")
    if count == 0:
        return np.zeros((0, h, w, c), np.uint8)
    return np.memmap(data, dtype=np.uint8, mode="r", shape=(count, h, w, c))


def nchw_as_float(x: torch.Tensor) -> torch.Tensor:
    """Images kept as uint8 (a quarter of the memory) become [-1, 1] floats a batch at a time;
    floats pass through."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def nhwc_to_float(u8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (the GAN's range), exactly as images.load_tensor."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class Images:
    """Rows of a folder's pixel array, standing in for an N x C x H x W uint8 tensor: `len`,
    `shape` and indexing (an index array, a boolean mask, a slice) read only the rows asked
    for; `subset` narrows without reading. Pickles as folder and rows: a worker process maps
    the file itself rather than receiving a copy of it."""

    def __init__(self, folder: str | Path, n_rows: int, rows: np.ndarray | None = None, writer: str = "ingest"):
        self.folder, self.n_rows, self.writer = Path(folder), n_rows, writer
        self._pixels = open_pixels(folder, n_rows, writer)  # checked here, once
        self.rows = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        _, h, w, c = self._pixels.shape
        self.shape = (len(self.rows), c, h, w)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> torch.Tensor:
        if self._pixels is None:  # unpickled in a worker: __init__ verified it
            self._pixels = open_pixels(self.folder, self.n_rows, self.writer, verify=False)
        rows = self.rows[idx if isinstance(idx, slice) else np.asarray(idx)]
        return torch.from_numpy(np.ascontiguousarray(self._pixels[rows])).permute(0, 3, 1, 2)

    def subset(self, idx) -> "Images":
        narrowed = Images.__new__(Images)
        narrowed.__dict__.update(self.__dict__)
        narrowed.rows = self.rows[idx if isinstance(idx, slice) else np.asarray(idx)]
        narrowed.shape = (len(narrowed.rows), *self.shape[1:])
        return narrowed

    def __getstate__(self):
        return {**self.__dict__, "_pixels": None}


def subset(x, idx):
    """Rows idx of a tensor, or of Images without reading them."""
    return x.subset(idx) if hasattr(x, "subset") else x[idx]


class Stack:
    """Image sets (Images, tensors, evaluate's SMOTE rows) end to end, indexed as one; a
    batch comes back as [-1, 1] floats (the parts' dtypes may differ)."""

    def __init__(self, *parts):
        self.parts = [p for p in parts if len(p)]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> torch.Tensor:
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        out = torch.empty(len(idx), *self.shape[1:])
        part_of = np.searchsorted(self.starts, idx, side="right") - 1
        for p in np.unique(part_of):
            here = np.flatnonzero(part_of == p)
            x = self.parts[p][idx[here] - self.starts[p]]
            out[torch.from_numpy(here)] = nchw_as_float(x)
        return out


def read_prepared(params, check_files: bool = False):
    """The prepared manifest, its images checked to be the size and channels the params say."""
    df = read_manifest(params.paths.prepared, check_files)
    check_format(params.paths.prepared, params.ingest.size, params.ingest.channels)
    return df


def one_thread(_worker_id: int):
    """A DataLoader worker's init: it reads rows of the pixel store; the main process's threads train."""
    import torch

    torch.set_num_threads(1)
