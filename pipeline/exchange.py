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

import shutil
from pathlib import Path

import yaml

from .files import atomic_dir, atomic_file
from .scm import VersioningError, dvc

EXCHANGE = Path(".ganaug/exchange")


def send(path: str | Path, key: str, repo: Path = Path(".")) -> str:
    src = Path(path)
    if not src.exists():
        raise VersioningError(f"{src}: nothing to send")
    if not dvc(repo, "remote", "list").strip():
        raise VersioningError(f"{repo.resolve()}: no DVC remote configured; remote training needs one "
                              "(dvc remote add -d <name> <url>)")
    slot = repo / EXCHANGE / key / src.name
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
    dest = Path(dest)
    slot_dir = repo / EXCHANGE / key
    slot_dir.mkdir(parents=True, exist_ok=True)
    name = yaml.safe_load(dvc_text)["outs"][0]["path"]  # as the sender named it
    dvc_file = slot_dir / f"{name}.dvc"
    dvc_file.write_text(dvc_text)
    dvc(repo, "pull", "-q", str(dvc_file.relative_to(repo)))
    src = slot_dir / name
    if src.is_dir():
        with atomic_dir(dest) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_file(dest) as tmp:
            shutil.copy2(src, tmp)
    shutil.rmtree(slot_dir)  # runs must not pile up copies in the workspace
    return dest
