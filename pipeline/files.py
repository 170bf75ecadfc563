"""Atomic writes: build under a temporary name next to the target, then rename into place.

A stage killed half-way leaves the previous output intact (and a `.tmp-*` sibling that
the next run removes). Renames stay on one filesystem because the temp is a sibling.
A full disk (or quota, or file size limit) is a StorageError that says so; the temp is
removed and the previous output stays. Files get the usual 0666 & ~umask mode, not the
0600 of a temp file, so a teammate or a DVC remote sync can read them.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import StorageError

TMP_MARK = ".tmp-"
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads write too)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_full(e: OSError, dest: Path) -> StorageError:
    return StorageError(f"the disk is full (or a quota or file size limit was reached) while writing {dest}: "
                        f"{e.strerror or e}; nothing was replaced, the previous {dest.name} is intact. "
                        "Free some space and run the stage again")


def _clean_stale(dest: Path):
    """Remove what a killed run left beside dest. Killed mid-swap (dest moved aside, the new
    one not yet in), the previous output is put back first: nothing is ever lost."""
    aside = sorted(dest.parent.glob(f"{dest.name}{TMP_MARK}old-*"))
    if aside and not dest.exists():
        os.replace(aside[-1], dest)
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
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in DISK_FULL:
            raise _disk_full(e, dest) from None
        raise
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
    _clean_stale(dest)
    fd, tmp = tempfile.mkstemp(prefix=f"{dest.name}{TMP_MARK}", dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno in DISK_FULL:
            raise _disk_full(e, dest) from None
        raise
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
