"""Moving stage files between machines through the DVC remote (no shared filesystem).

`send` snapshots a file or folder under `.ganaug/exchange/<key>/` (so it never collides
with a dvc.yaml output), `dvc add`s and `dvc push`es it, and returns the `.dvc` file's text:
a few lines that travel as a flow parameter or result. `receive` writes that text on the
other machine, `dvc pull`s, and copies the content to where the stage expects it. Both
remove their snapshot afterwards; the objects stay in the DVC cache (`dvc gc` trims it).
Both sides must be DVC repositories configured with the same remote. `.ganaug/` must not
be git-ignored: DVC refuses to write a `.dvc` file git would ignore.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from ..plumbing.errors import DataError
from .files import atomic_dir, atomic_file
from ..plumbing.paths import safe_relative
from .scm import VersioningError, dvc

EXCHANGE = Path(".ganaug/exchange")
PLAIN = re.compile(r"[A-Za-z0-9._-]{1,200}")


def send(path: str | Path, key: str, repo: Path = Path(".")) -> str:
    src = Path(path)
    if not src.exists():
        raise VersioningError(f"{src}: nothing to send")
    if not dvc(repo, "remote", "list").strip():
        raise VersioningError(f"{repo.resolve()}: no DVC remote configured; remote training needs one "
                              "(dvc remote add -d <name> <url>)")
    slot = repo / EXCHANGE / _plain(key, "exchange key") / src.name
    if slot.parent.exists():
        shutil.rmtree(slot.parent)
    slot.parent.mkdir(parents=True)
    shutil.copytree(src, slot) if src.is_dir() else shutil.copy2(src, slot)
    rel = str(slot.relative_to(repo))
    dvc(repo, "add", "-q", rel)
    dvc(repo, "push", "-q", rel + ".dvc")
    text = Path(repo / (rel + ".dvc")).read_text()
    shutil.rmtree(slot.parent)  # the content is in the remote (and the local cache) now
    return text


def receive(dvc_text: str, key: str, dest: str | Path, repo: Path = Path(".")) -> Path:
    """The `.dvc` text arrives from another machine (a flow parameter or result): untrusted.
    It may only name one plain file or folder, which lands in this key's slot and nowhere else."""
    dest = Path(dest)
    slot_dir = repo / EXCHANGE / _plain(key, "exchange key")
    name = _sent_name(dvc_text)
    slot_dir.mkdir(parents=True, exist_ok=True)
    dvc_file = slot_dir / f"{name}.dvc"
    dvc_file.write_text(dvc_text)
    dvc(repo, "pull", "-q", str(dvc_file.relative_to(repo)))
    src = slot_dir / name
    if src.is_dir():
        with atomic_dir(dest, owned=True) as tmp:  # reports/train: written file by file, no OWNER
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_file(dest) as tmp:
            shutil.copy2(src, tmp)
    shutil.rmtree(slot_dir)  # runs must not pile up copies in the workspace
    return dest


def _plain(name, what: str) -> str:
    if not isinstance(name, str) or not PLAIN.fullmatch(name) or name in (".", ".."):
        raise DataError(f"{what} {name!r}: expected one plain name (letters, digits, '.', '_', '-')")
    return name


def _sent_name(dvc_text: str) -> str:
    try:
        meta = yaml.safe_load(dvc_text)
    except yaml.YAMLError:
        meta = None
    outs = meta.get("outs") if isinstance(meta, dict) else None
    if not (isinstance(outs, list) and len(outs) == 1 and isinstance(outs[0], dict) and "path" in outs[0]):
        raise DataError("received text is not a .dvc text of one output (expected `outs: [{path: ..., md5: ...}]`)")
    path = outs[0]["path"]
    safe_relative(path, "received .dvc text")  # says what is wrong with ../ or /abs
    return _plain(path, "received .dvc path")
