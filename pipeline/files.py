"""Atomic writes: build under a temporary name next to the target, then rename into place.

A stage killed half-way leaves the previous output intact (and a `.tmp-*` sibling that
the next run removes). Renames stay on one filesystem because the temp is a sibling.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


def _clean_stale(dest: Path):
    for old in dest.parent.glob(f"{dest.name}{TMP_MARK}*"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


@contextmanager
def atomic_dir(dest: str | Path):
    """Yield an empty temp folder; on success it replaces `dest` (old one removed last)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    tmp = dest.parent / f"{dest.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_path(tmp, dest)


def replace_path(src: Path, dest: Path):
    """Move src onto dest. For folders: swap via a side name, so dest is never missing for long."""
    if dest.is_dir() and not dest.is_symlink():
        old = dest.parent / f"{dest.name}{TMP_MARK}old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


@contextmanager
def atomic_file(dest: str | Path, mode: str = "w"):
    """Yield a temp path (str) in dest's folder; renamed onto dest on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{dest.name}{TMP_MARK}", dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def link_or_copy(src: Path, dest: Path, link: str = "hardlink"):
    """Hard link when asked and possible (same filesystem), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link == "hardlink":
        try:
            os.link(src, dest)
            return
        except OSError:
            pass
    shutil.copy2(src, dest)
