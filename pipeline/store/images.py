"""Decoding, validation and conversion of image files; tensors for the GAN and back."""
from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network at run time
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe
ORIENTATION = 0x0112  # the EXIF tag: how a viewer rotates or flips the stored pixels


class BadImage(Exception):
    """Why one file cannot be used; becomes a quarantine entry or a DataError."""


def decode(data: bytes, channels: int, max_pixels: int, background: str = "white", shrink_to: int | None = None,
           notes: list[str] | None = None) -> np.ndarray:
    """Bytes -> HxWxC uint8 as a viewer shows the image, fully decoded (so truncation is
    caught here, not later): EXIF orientation applied, 16-bit scaled (not clipped) to 8,
    transparency composited onto the background. shrink_to: the size it will be resized to;
    a much larger image is first reduced by an integer factor (a box filter, as an area resize
    would average), so conversion never holds more than the decoded pixels (a 7000 x 7000 RGBA
    PNG of 190 KB took 5 GB as float64). notes: what the user should hear (colour dropped,
    frames ignored)."""
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
                if getattr(im, "n_frames", 1) > 1 and notes is not None:
                    notes.append("multi_frame")  # the first frame is the image
                if im.getexif().get(ORIENTATION, 1) != 1:
                    im = ImageOps.exif_transpose(im)
                if shrink_to and min(im.size) >= 4 * shrink_to:
                    if _has_alpha(im) and im.mode in ALPHA_MODES + ("P", "L", "RGB"):
                        # Composite first: averaging pixels before alpha (or a colour key) is
                        # applied would blend the hidden colour into the edges as a fringe.
                        im = _on_background(im, background)
                    elif im.mode == "P":  # reduce takes no palette
                        im = im.convert("RGB")
                    try:
                        im = im.reduce(min(im.size) // (2 * shrink_to))
                    except (ValueError, NotImplementedError):
                        pass  # a mode reduce does not take (16-bit): converted at full size
                arr = to_uint8_channels(im, channels, background, notes)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"oversized: {e}") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (no decoder recognizes it)") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's ways of saying corrupt/truncated
        raise BadImage(f"corrupt or truncated: {e}") from None
    return arr


ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or "transparency" in im.info


def _on_background(im: Image.Image, background: str) -> Image.Image:
    """8-bit RGB, alpha composited onto the background (PIL's, in uint8: bounded memory)."""
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255) if background == "white" else (0, 0, 0, 255))
    return Image.alpha_composite(bg, im.convert("RGBA")).convert("RGB")


def _colourful(rgb: np.ndarray) -> bool:
    """Whether converting to grey loses colour a person sees: channels apart by more than 16
    levels on at least 5 % of the pixels (on a sample of them: it is a warning, not a measure)."""
    px = rgb.reshape(-1, 3)[:: max(1, rgb.shape[0] * rgb.shape[1] // 4096)].astype(np.int16)
    return bool(((px.max(1) - px.min(1)) > 16).mean() > 0.05)


def to_uint8_channels(im: Image.Image, channels: int, background: str, notes: list[str] | None = None) -> np.ndarray:
    """A decoded PIL image -> HxWxC uint8. PIL's own convert() clips 16-bit grey to 0/255
    and drops alpha without compositing: both lose the picture, so they are done here."""
    if im.mode == ("L" if channels == 1 else "RGB") and "transparency" not in im.info:  # the common case
        a = np.asarray(im)
        return a[:, :, None] if channels == 1 else a
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im)
        if im.mode == "I" and (a.min() < 0 or a.max() > 65535):
            raise BadImage(f"32-bit integer pixels (range {a.min()}..{a.max()}); convert to 8 or 16 bit")
        grey = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    elif im.mode == "F":
        raise BadImage("floating-point pixels have no known range; convert to 8 or 16 bit")
    else:
        if _has_alpha(im):
            rgba = np.asarray(im.convert("RGBA")).astype(np.float64)
            alpha = rgba[:, :, 3:] / 255.0
            bg = 255.0 if background == "white" else 0.0
            rgb = np.round(rgba[:, :, :3] * alpha + bg * (1.0 - alpha)).astype(np.uint8)
        else:
            rgb = np.asarray(im.convert("RGB"))
    if channels == 3:
        return np.ascontiguousarray(rgb)
    if notes is not None and _colourful(rgb):
        notes.append("colour_dropped")  # ingest.channels=1 keeps only the brightness
    grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))  # ITU-R 601 luma, as PIL
    return grey[:, :, None]


@functools.lru_cache(maxsize=8)
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
    if _is_plain_resize(transform):  # cv2 directly: the same pixels as albumentations', 6x faster
        size = transform.transforms[0].height
        out = arr if arr.shape[:2] == (size, size) else cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA)
    else:
        out = transform(image=arr)["image"]
    return out[:, :, None] if out.ndim == 2 else out


@functools.lru_cache(maxsize=8)
def _is_plain_resize(transform: A.Compose) -> bool:
    ops = transform.transforms
    return len(ops) == 1 and type(ops[0]) is A.Resize and ops[0].interpolation == cv2.INTER_AREA \
        and ops[0].height == ops[0].width


def save_png(arr: np.ndarray, path: Path):
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    # Level 1: small images compress about as well, several times faster than the default 6.
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path, format="PNG", compress_level=1)


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
