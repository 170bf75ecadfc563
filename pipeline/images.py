"""Decoding, validation and conversion of image files; tensors for the GAN and back."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network at run time
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class BadImage(Exception):
    """Why one file cannot be used; becomes a quarantine entry or a DataError."""


def decode(data: bytes, channels: int, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWxC uint8, fully decoded (so truncation is caught here, not later)."""
    if not data:
        raise BadImage("zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImage(f"oversized: {w}x{h} pixels > ingest.max_pixels={max_pixels}")
                im.load()
                im = im.convert("L" if channels == 1 else "RGB")
                arr = np.asarray(im)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"oversized: {e}") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (no decoder recognizes it)") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's ways of saying corrupt/truncated
        raise BadImage(f"corrupt or truncated: {e}") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def resizer(size: int, mode: str) -> A.Compose:
    """stretch: ignore aspect; pad: fit inside, pad with black; crop: fill, centre-crop."""
    interp = cv2.INTER_AREA
    if mode == "stretch":
        ops = [A.Resize(size, size, interpolation=interp)]
    elif mode == "pad":
        ops = [A.LongestMaxSize(max_size=size, interpolation=interp),
               A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0)]
    else:
        ops = [A.SmallestMaxSize(max_size=size, interpolation=interp), A.CenterCrop(size, size)]
    return A.Compose(ops)


def convert(arr: np.ndarray, transform: A.Compose) -> np.ndarray:
    out = transform(image=arr)["image"]
    return out[:, :, None] if out.ndim == 2 else out


def save_png(arr: np.ndarray, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path, format="PNG")


def load_tensor(paths: list[Path], channels: int) -> torch.Tensor:
    """PNG files -> float NCHW in [-1, 1] (the GAN's range)."""
    mode = "L" if channels == 1 else "RGB"
    arrs = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert(mode))
        arrs.append(a[:, :, None] if a.ndim == 2 else a)
    if not arrs:
        return torch.empty(0)
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()
