"""Progress bars: live in a terminal; in logs (DVC, Prefect, CI) a line every 15 s, not a flood."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 15.0)
    return tqdm(iterable, **kwargs)


write = tqdm.write  # print without breaking a bar
