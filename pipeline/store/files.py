"""Atomic writes: build under a temporary name next to the target, then rename into place.

A stage killed half-way leaves the previous output intact (and a `<name>.tmp-<pid>-<hex>`
sibling that the next run removes once that process is gone: never another live writer's,
never a file of the user's that happens to start alike). Renames stay on one filesystem
because the temp is a sibling. One writer per output folder at a time (a lock); a folder is
replaced only when ganaug made it (`OWNER`, below), so a mistyped path cannot replace the
user's own folder.
A full disk (or quota, or file size limit) is a StorageError that says so; the temp is
removed and the previous output stays. Files get the usual 0666 & ~umask mode, not the
0600 of a temp file, so a teammate or a DVC remote sync can read them.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..plumbing.errors import DataError, StorageError

TMP_MARK = ".tmp-"
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
OWNER = ".ganaug.json"  # in every folder ganaug writes: what made it (the stage's provenance)
# In a folder ganaug is building (or has moved aside), its own name: the token that proves a
# leftover is ganaug's temporary. A name alone proves nothing (a user's `prepared.tmp-20240101`
# backup), nor does a copied OWNER record. Removed before the folder takes its final name.
TMP_TOKEN = ".ganaug-tmp"
# Beside OWNER in a sealed folder: every file ganaug wrote there, one relative path a line.
LISTING = ".ganaug-files"
LISTING_LIMIT = 256 << 20  # bytes: millions of paths
# What a file browser leaves in any folder it shows (Finder, Explorer): not the user's data.
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# One lock file per output folder on this machine, in a folder of this user's (another user's
# locks folder in /tmp would not be writable).
LOCKS = Path(tempfile.gettempdir()) / f"ganaug-locks-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


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


def _temp_name(dest: Path, kind: str = "") -> Path:
    return dest.parent / f"{dest.name}{TMP_MARK}{kind}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _stale(dest: Path) -> list[Path]:
    """ganaug's temporaries beside dest whose writer is gone: a folder only when it holds the
    token naming that very folder (`TMP_TOKEN`); a file (atomic_file's, which cannot hold one)
    only by its exact form, the writer's pid and mkstemp's 8 characters."""
    pattern = re.compile(re.escape(dest.name + TMP_MARK) + r"(old-)?(\d+)-[0-9a-z_]{8}")
    found = []
    for p in dest.parent.glob(f"{dest.name}{TMP_MARK}*"):
        m = pattern.fullmatch(p.name)
        if not m or _alive(int(m.group(2))):
            continue
        if p.is_symlink() or (p.is_dir() and not _holds_token(p)):
            continue  # not provably ganaug's: left alone
        found.append(p)
    return found


def _holds_token(folder: Path) -> bool:
    token = folder / TMP_TOKEN
    try:
        return token.is_file() and not token.is_symlink() and token.stat().st_size < 1024 \
            and token.read_text().strip() == folder.name
    except (OSError, UnicodeDecodeError):
        return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own leftovers (an earlier stage call that died) are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(dest: Path):
    """Remove what a killed run left beside dest. Killed mid-swap (dest moved aside, the new
    one not yet in), the previous output is put back first: nothing is ever lost."""
    stale = _stale(dest)
    aside = sorted((p for p in stale if p.name.startswith(f"{dest.name}{TMP_MARK}old-")),
                   key=lambda p: p.stat().st_mtime)
    if aside and not dest.exists():
        os.replace(aside[-1], dest)
        (dest / TMP_TOKEN).unlink(missing_ok=True)
    for old in stale:
        if old.exists():
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()


def check_owned(dest: Path):
    """Refuse to replace a folder ganaug did not make. A folder is ganaug's only by a valid OWNER
    record made for that very folder when ganaug sealed it (`_seal`: its entries, its listing,
    its manifest's hash), so a record copied into a user's folder, or a ganaug folder the user
    has since added files to, is not ganaug's to replace. Not by name: a
    `manifest.parquet` proves nothing. An empty folder or a missing one is free."""
    if not dest.exists() and not dest.is_symlink():
        return
    if dest.is_symlink() or not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a folder ganaug wrote (a {'link' if dest.is_symlink() else 'file'}); "
                        "ganaug replaces only its own outputs. Move it away or choose another path")
    entries = {p.name for p in dest.iterdir()} - {OWNER, TMP_TOKEN, LISTING} - SYSTEM_FILES
    if not entries and not (dest / OWNER).exists():
        return
    why = _not_ours(dest, entries)
    if why:
        raise DataError(f"{dest}: {why}, and ganaug replaces only its own outputs; nothing was changed. Move it "
                        "away or point the path elsewhere")


def _not_ours(folder: Path, entries: set[str]) -> str | None:
    """Why folder is not provably the one ganaug sealed (None: it is)."""
    try:
        record = owner_record(folder)
    except ValueError as e:
        return f"this folder was not made by ganaug (its {OWNER} record: {e})"
    contents = record.get("contents")
    if record.get("made_by") != "ganaug" or not isinstance(contents, list) \
            or not all(isinstance(c, str) for c in contents):
        return (f"its {OWNER} record lists no contents (not ganaug's, or written by a ganaug from before "
                "2026-12-05: if it is such an output, delete it and run the stage again)")
    extra = sorted(entries - set(contents))
    if extra:
        return f"it holds {extra[:5]}{' ...' if len(extra) > 5 else ''}, which ganaug did not write there"
    added = _added_files(folder, record)
    if added:
        return f"it holds {added[:5]}{' ...' if len(added) > 5 else ''} inside it, which ganaug did not write there"
    manifest = folder / "manifest.parquet"
    if "manifest_sha256" in record and manifest.is_file() and _sha256(manifest) != record["manifest_sha256"]:
        return "its manifest.parquet is not the one ganaug wrote there"
    return None


def owner_record(folder: Path) -> dict:
    """The folder's OWNER record, read as untrusted (ValueError saying why it is none)."""
    return own_record(Path(folder) / OWNER)


def own_record(path: Path) -> dict:
    """read_record of one of ganaug's records in a folder it wrote; one that DVC checked out as a
    link (cache.type symlink) is read in this repository's own cache, never elsewhere."""
    return read_record(_in_dvc_cache(Path(path)))


def _in_dvc_cache(path: Path) -> Path:
    """path, or where it leads when it is a link DVC made into this repository's own cache."""
    if path.is_symlink():
        cache = dvc_cache_of(path.parent.resolve())
        return path.resolve() if cache is not None and cache in path.resolve().parents else path
    return path


def _listing(folder: Path) -> list[str]:
    """Every file below the folder (relative paths), but ganaug's bookkeeping and file browsers'."""
    names = []
    for root, _, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        names += [str(rel / f) for f in files if not (root == str(folder) and f in (OWNER, TMP_TOKEN, LISTING))
                  and f not in SYSTEM_FILES]
    return sorted(names)


def _added_files(folder: Path, record: dict) -> list[str]:
    """Files below the folder that its sealed listing does not hold (a file removed is no loss).
    A listing that is missing, or not the one the record's hash names, holds nothing."""
    if "tree_sha256" not in record:
        return []
    try:
        path = _in_dvc_cache(folder / LISTING)
        st = os.lstat(path)
        text = path.read_bytes() if stat.S_ISREG(st.st_mode) and st.st_size <= LISTING_LIMIT else b""
    except OSError:
        text = b""
    listed = set(text.decode("utf-8", "replace").splitlines()) \
        if hashlib.sha256(text).hexdigest() == record["tree_sha256"] else set()
    return sorted(set(_listing(folder)) - listed)


# The files a sealed record vouches for, by their hash: a manifest or pixel array changed since
# ganaug wrote it (a hand edit, a restore of another version beside the record) is refused.
SEALED = {"manifest.parquet": "manifest_sha256", "pixels.u8": "pixels_sha256"}
_HASHED: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: a file is hashed once a process


def check_unchanged(folder: str | Path, name: str, rerun: str):
    """name (a SEALED file) is the one ganaug wrote into folder, when its record says which."""
    try:
        want = owner_record(Path(folder)).get(SEALED[name])
    except ValueError:
        return  # no record to compare with: the provenance checks refuse such a folder
    if want is None:
        return
    path = Path(folder) / name
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = _sha256(path)
    if _HASHED[key] != want:
        raise DataError(f"{path}: not the file ganaug wrote there (it changed since; {OWNER} records another hash); "
                        f"re-run {rerun}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _seal(tmp: Path):
    """Bind the folder's OWNER record to the folder as ganaug finished writing it: its top-level
    entries, the hash of LISTING (every file below it) and the SEALED files' hashes
    (check_owned and check_unchanged read them back)."""
    try:  # ours, written moments ago; or a snapshot received back (exchange): read as untrusted
        record = {**read_record(tmp / OWNER), "made_by": "ganaug"}
    except ValueError:
        record = {"made_by": "ganaug"}
    listing = "\n".join(_listing(tmp)).encode()
    (tmp / LISTING).write_bytes(listing)  # every file it holds: check_owned tells the user's additions apart
    record["tree_sha256"] = hashlib.sha256(listing).hexdigest()
    record["contents"] = sorted(p.name for p in tmp.iterdir() if p.name not in (OWNER, TMP_TOKEN))
    for name, key in SEALED.items():
        if (tmp / name).is_file():
            record[key] = _sha256(tmp / name)
    (tmp / OWNER).write_text(json.dumps(record, indent=1) + "\n")


@contextmanager
def output_lock(dest: Path):
    """One writer per output on this machine: a second ganaug process writing the same folder
    fails at once, clearly, instead of both leaving it half-written."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:24]
    lock = FileLock(str(LOCKS / f"{key}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DataError(f"{dest}: another ganaug process is writing it right now; wait for it to finish "
                        "(or stop it) and run again") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def atomic_dir(dest: str | Path, made_by: dict | None = None, owned: bool = False):
    """Yield an empty temp folder; on success it replaces `dest` (old one removed last). Only
    one process may write dest at a time, and dest must be ganaug's (check_owned). The new
    folder records what made it in OWNER (`made_by`: the stage and its inputs' identity)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(dest):
        _clean_stale(dest)
        if not owned:  # owned: the caller knows dest is ganaug's (a snapshot received back)
            check_owned(dest)
        tmp = _temp_name(dest)
        tmp.mkdir()
        (tmp / TMP_TOKEN).write_text(tmp.name)
        (tmp / OWNER).write_text(json.dumps({"made_by": "ganaug", **(made_by or {})}, indent=1) + "\n")
        with _replacing(tmp, dest):
            yield tmp


@contextmanager
def _replacing(tmp: Path, dest: Path):
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
    _seal(tmp)  # (killed while it hashes, the token still marks the temporary as ganaug's to remove)
    (tmp / TMP_TOKEN).unlink(missing_ok=True)  # the folder's final content: no token
    replace_path(tmp, dest)


def replace_path(src: Path, dest: Path):
    """Move src onto dest. For folders: swap via a side name, so dest is never missing for long."""
    if dest.is_dir() and not dest.is_symlink():
        old = _temp_name(dest, "old-")
        (dest / TMP_TOKEN).write_text(old.name)  # moved aside, it is provably ganaug's to restore
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
    fd, tmp = tempfile.mkstemp(prefix=f"{dest.name}{TMP_MARK}{os.getpid()}-", dir=dest.parent)
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


def check_report(path: str | Path) -> tuple[dict, list]:
    """(its folder's record, the reports the record lists) when ganaug may write the report at
    path; a DataError naming why not. A report is replaced only when ganaug wrote it: its
    folder's OWNER record lists the reports ganaug wrote there (a folder of reports is written
    file by file, so the record grows with each new name). A file there that the record does not
    list is not ganaug's (a user's own metrics.json in paths.reports, or a record copied from
    elsewhere). The stage guards call it before a stage starts, claim_report when it writes."""
    path = Path(path)
    folder = path.parent
    record, written = {"made_by": "ganaug", "stage": "reports"}, []
    if (folder / OWNER).exists() or (folder / OWNER).is_symlink():
        try:
            record = owner_record(folder)
        except ValueError as e:
            raise DataError(f"{folder / OWNER}: not ganaug's record of its reports ({e}); nothing was written. "
                            "Choose another paths.reports, or delete it") from None
        if record.get("made_by") != "ganaug":
            raise DataError(f"{folder / OWNER}: not ganaug's record of its reports; nothing was written. Choose "
                            "another paths.reports, or delete it")
        listed = record.get("files", record.get("contents"))
        written = listed if isinstance(listed, list) else []
    if path.name not in written and (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: a file of that name is already there that ganaug did not write (its {folder / OWNER} "
                        "does not list it): ganaug replaces only reports it wrote, so nothing was written. Choose "
                        "another paths.reports, or move the file (from a ganaug before 2026-12-05: delete it)")
    return record, written


def claim_report(path: str | Path):
    """Record the report at path as ganaug's in its folder's OWNER (check_report first)."""
    path = Path(path)
    record, written = check_report(path)
    if path.name in written:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path.parent / OWNER) as tmp:
        Path(tmp).write_text(json.dumps({**record, "files": sorted({*written, path.name})}, indent=1) + "\n")


def write_json(path: str | Path, obj) -> None:
    claim_report(path)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def write_csv(df, path: str | Path):
    """A report table, safe to open in a spreadsheet: a text cell that starts like a formula
    (a class named `=HYPERLINK(...)`) gets a leading apostrophe, as OWASP advises; numbers stay."""
    def safe(v):
        return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v

    import pandas as pd

    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(safe)
    claim_report(path)
    with atomic_file(path) as tmp:
        out.to_csv(tmp, index=False)


RECORD_LIMIT = 1 << 20  # bytes: ganaug's own JSON records (gate, journal, OWNER, pixels.json) are far smaller


def read_record(path: Path) -> dict:
    """One of ganaug's own small JSON records, read as untrusted: a regular file (not a link, a
    FIFO that would block the read, or a folder), at most RECORD_LIMIT bytes, a JSON object.
    ValueError saying which it is not; the caller names the stage to re-run."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ValueError("missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file (a link, a FIFO or a folder)")
    if st.st_size > RECORD_LIMIT:
        raise ValueError(f"{st.st_size} bytes, more than a record of ganaug's holds")
    try:
        record = json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    return record


def check_own_file(src: Path, root: Path, done: str = "nothing was appended"):
    """src must be a regular file inside root (the ganaug folder it comes from), not a link out
    of it: what is planted in ganaug's own folders never reaches the user's training set. A
    link DVC made (cache.type symlink: a checked-out output links into the cache) is the file
    ganaug wrote when it leads into the cache of the DVC repository holding root, as its config
    names it (resolved); a link into any other folder, whatever its name, is not."""
    src = Path(src)
    cache = dvc_cache_of(Path(root).resolve()) if src.is_symlink() else None
    dvc_link = cache is not None and cache in src.resolve().parents
    if (src.is_symlink() and not dvc_link) or not src.is_file():
        raise DataError(f"{src}: not a regular file ganaug wrote (a link, or not a file); {done}. "
                        f"Re-run the stage that writes {root}")
    if not dvc_link and Path(root).resolve() not in src.resolve().parents:
        raise DataError(f"{src}: lies outside {root} (through a linked folder); {done}. "
                        f"Re-run the stage that writes {root}")


@functools.lru_cache(maxsize=16)
def dvc_cache_of(folder: Path) -> Path | None:
    """The DVC cache of the repository holding folder (its `.dvc/config`'s cache.dir, default
    .dvc/cache), resolved; None outside a DVC repository."""
    for parent in (folder, *folder.parents):
        if (parent / ".dvc").is_dir():
            from dvc.config import Config

            configured = Config(dvc_dir=str(parent / ".dvc"))["cache"].get("dir")
            return Path(configured or parent / ".dvc" / "cache").resolve()
    return None


def link_or_copy(src: Path, dest: Path, link: str = "hardlink", root: Path | None = None):
    """Hard link when asked and possible (same filesystem), else copy. With root (the ganaug
    folder src comes from): src must be its own regular file (check_own_file)."""
    if root is not None:
        check_own_file(src, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link == "hardlink":
        try:
            os.link(src, dest)
            return
        except OSError:
            pass
    shutil.copy2(src, dest)
