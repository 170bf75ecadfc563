"""Where a stage may read and write, checked once, here, before anything is touched.

- Untrusted relative paths (manifest rows, table rows, names in `.dvc` texts) stay inside
  their root: no absolute path, no `..`, nothing empty. Lexical, like tarfile's data filter:
  a symlink the user placed in their own folder is theirs to follow (DVC's symlink cache
  mode makes such links), a `../` smuggled in through a table is not.
- A stage's outputs may not equal, contain or sit inside any input or any other output of
  the pipeline, nor the working folder, `.git`, `.dvc` or the params and pipeline files.
- An output must be writable (its nearest existing folder accepts a new file) before the
  work starts, not after an hour of training.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath

from .errors import DataError, ParamsError

# Never an output, nor inside one: the working folder's repository and pipeline files.
PROTECTED = (".git", ".dvc", "dvc.yaml", "dvc.lock", "params.yaml")


def inside(root: str | Path, rel, where: str) -> Path:
    """root / rel, refusing any rel that could leave root."""
    return Path(root) / safe_relative(rel, where)


def safe_relative(rel, where: str) -> PurePosixPath:
    if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
        raise DataError(f"{where}: empty or invalid path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~") or (len(rel) > 1 and rel[1] == ":"):
        raise DataError(f"{where}: path {rel!r} is absolute; paths here must be relative to their folder")
    if ".." in p.parts:
        raise DataError(f"{where}: path {rel!r} climbs out of its folder with '..'")
    return p


def relation(a: Path, b: Path) -> str | None:
    """How resolved path a stands to b: 'is', 'contains', 'sits inside', or None (apart)."""
    if a == b:
        return "is"
    if a in b.parents:
        return "contains"
    if b in a.parents:
        return "sits inside"
    return None


def repository_roots(start: Path) -> list[Path]:
    """start and every folder above it that is a git or DVC repository's root: whatever the
    current folder, the repository's own files are found from its root."""
    roots = [start]
    for folder in (start, *start.parents):
        if (folder / ".git").exists() or (folder / ".dvc").exists():
            roots.append(folder)
    return list(dict.fromkeys(roots))


def check_apart(output: tuple[str, Path], others: list[tuple[str, Path]], stage: str):
    """Refuse an output that overlaps any of `others` ((description, resolved path) pairs), the
    working folder, a repository (its root, .git, .dvc, dvc.yaml, dvc.lock, params.yaml) of the
    working folder or of the output itself."""
    name, out = output
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise ParamsError(f"{stage}: {name}={out} is the working folder or contains it; "
                          "writing it would replace everything here. Point it at a folder of its own")
    if {".git", ".dvc"} & set(out.parts):
        raise ParamsError(f"{stage}: {name}={out} is inside a repository's own .git or .dvc folder; choose another path")
    if out.is_dir() and ((out / ".git").exists() or (out / ".dvc").exists()):
        raise ParamsError(f"{stage}: {name}={out} is a repository (it holds .git or .dvc); writing it would "
                          "replace the repository. Choose another path")
    for root in dict.fromkeys([*repository_roots(cwd), *repository_roots(out.parent)]):
        if root != cwd and (out == root or out in root.parents):
            raise ParamsError(f"{stage}: {name}={out} is or contains the repository {root}; choose another path")
        for item in PROTECTED:
            hit = relation(out, root / item)
            if hit:
                raise ParamsError(f"{stage}: {name}={out} {hit} {root / item}; choose another path")
    for what, path in others:
        hit = relation(out, path)
        if hit:
            raise ParamsError(f"{stage}: {name}={out} {hit} {what}={path}; a stage's output must not "
                              "overlap an input or another output (replacing it would lose data). "
                              "Give each its own path")


def listed_folders(table: Path, limit: int = 10_000) -> list[Path]:
    """The folders holding the images a path,label table lists (relative to its folder): inputs
    as much as the table itself. Unreadable tables and odd rows are ingest's to report."""
    import pandas as pd

    try:
        paths = (pd.read_csv(table, usecols=["path"], dtype=str) if table.suffix.lower() == ".csv"
                 else pd.read_parquet(table, columns=["path"]))["path"]
    except Exception:
        return []
    folders = {os.path.dirname(p) for p in paths.dropna().astype(str)}
    return [(table.parent / f).resolve() for f in sorted(folders)[:limit]
            if not PurePosixPath(f).is_absolute() and ".." not in PurePosixPath(f).parts]


def check_writable(name: str, out: Path, folder: bool):
    """Fail now, with the reason, if `out` cannot be written."""
    if out.exists() and out.is_dir() != folder:
        kind = "a folder" if out.is_dir() else "a file"
        raise ParamsError(f"{name}={out} is {kind}; expected {'a folder' if folder else 'a file'}")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ParamsError(f"{name}={out}: cannot create it, {parent} is a file, not a folder")
    probe = parent / f".ganaug-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ParamsError(f"{name}={out}: cannot write in {parent} ({e.strerror or e}); "
                          "fix its permissions or choose another path") from None
