"""append in place: accepted images become a new version of a DVC-tracked training set.

The batch lands in `<target>/ganaug-batches/<batch_id>/` (`<class>/<id>.png` + `manifest.parquet`);
the batch id hashes the sample ids of its images (which hash checkpoint, class and seed),
so the same images twice add nothing, whatever params changed around them. Then a granular `dvc add`, a git commit naming the batch,
its counts and threshold, a tag, and `dvc push` when a remote is configured.

A transaction, with a journal (`.git/ganaug-append.json`, written before the first change):
the batch is written aside and renamed in, then `dvc add`, the commit and the tag. If any step
fails, or the process is killed at any point, the next append (under the same lock) reads the
journal and either completes that version (the commit was made: only the tag is missing) or
rolls it back (batch folder removed, `.dvc` file restored from the commit before), then goes on.
A version is appended when its tag exists, not when its folder does. A failed push keeps the
local commit and says so (push is retried by the caller, or by hand: `dvc push`). Two appends
never run at once: a file lock in `.git/` (DVC's own lock guards the rest).

Rollback: `git revert --no-edit <tag>` then `dvc checkout <target>.dvc` restores the
previous set (tests/test_versioned.py does exactly that).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

from filelock import FileLock, Timeout

from ..plumbing.errors import DataError
from .files import atomic_dir, link_or_copy, read_record
from ..judges.gate import gated_synthetic
from .manifest import BATCHES_DIR, read_manifest, write_manifest
from ..plumbing.params import Params
from .scm import VersioningError, dvc, git

TAG_PREFIX = "ganaug-"
JOURNAL = "ganaug-append.json"  # in .git/: the version being made, until it is made
STEPS = ("journal", "batch", "dvc_add", "commit", "tag")  # the points a kill is tested at


def _fault_point(step: str):
    """Tests kill the process here (GANAUG_KILL_AT=<step>), the way a SIGKILL would: no cleanup runs."""
    if os.environ.get("GANAUG_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def batch_id(sample_ids) -> str:
    return hashlib.sha256("\n".join(sorted(sample_ids)).encode()).hexdigest()[:12]


def append_in_place(params: Params) -> dict:
    target = Path(params.append.target).resolve()
    accepted_dir = Path(params.paths.accepted)
    accepted, gate = gated_synthetic(params, read_manifest(params.paths.prepared))
    repo = _repo_root(target)
    dvc_file = target.with_name(target.name + ".dvc")
    bid = batch_id(accepted["sample_id"])
    batch = target / BATCHES_DIR / bid
    tag = TAG_PREFIX + bid
    counts = {str(k): int(v) for k, v in accepted["label"].value_counts().sort_index().items()}
    result = {"batch": bid, "images": len(accepted), "per_class": counts, "tag": tag, "target": str(target),
              "gate": gate}
    try:
        # Every check of the repository's state runs under the lock: another append may be
        # committing the very same batch right now.
        lock = FileLock(str(repo / ".git" / "ganaug-append.lock"), timeout=params.append.lock_timeout_s)
        with lock:
            recovered = recover(repo)  # a version a killed append left half-made: completed or rolled back
            if recovered:
                result["recovered"] = recovered
            if gate["passed"] and _appended(repo, tag, batch, target, dvc_file):  # its push may have failed: again
                commit = git(repo, "rev-list", "-n", "1", tag, check=False).strip() or None
                return {**result, "changed": False, "commit": commit, **push(repo, dvc_file)}
            _check_tracked_and_clean(repo, target, dvc_file)
            if not gate["passed"]:  # evaluate said the batch does not help: no new version
                return {**result, "changed": False, "commit": None, "pushed": None}
            if accepted.empty:
                return {**result, "changed": False, "commit": None, "pushed": None}
            journal = repo / ".git" / JOURNAL
            _write_journal(journal, {"batch": str(batch.relative_to(repo)), "tag": tag,
                                     "dvc_file": str(dvc_file.relative_to(repo)),
                                     "gitignore": str((target.parent / ".gitignore").relative_to(repo)),
                                     "head": git(repo, "rev-parse", "HEAD").strip(),
                                     "message": _message(params, bid, counts)})
            _fault_point("journal")
            try:
                _version(repo, accepted, accepted_dir, batch=batch, bid=bid, dvc_file=dvc_file,
                         gitignore=target.parent / ".gitignore", tag=tag, message=_message(params, bid, counts))
            except BaseException:
                recover(repo)  # leave the set as it was
                raise
            journal.unlink()
    except Timeout:
        raise VersioningError(f"another append holds {repo / '.git' / 'ganaug-append.lock'} "
                              f"(waited append.lock_timeout_s={params.append.lock_timeout_s})") from None
    commit = git(repo, "rev-parse", "HEAD").strip()
    return {**result, "changed": True, "commit": commit, **push(repo, dvc_file)}


def _version(repo: Path, accepted, accepted_dir: Path, *, batch: Path, bid: str, dvc_file: Path, gitignore: Path,
             tag: str, message: str):
    """The new version, each step a fault point: the batch folder (copies of the accepted
    images and their manifest), `dvc add`, a commit of append's own two paths, the tag."""
    with atomic_dir(batch, made_by={"stage": "append", "batch": bid}) as tmp:
        rows = accepted.copy()
        rows["path"] = [f"{lab}/{sid}.png" for lab, sid in zip(rows["label"], rows["sample_id"])]
        for src, rel in zip(accepted["path"], rows["path"]):
            link_or_copy(accepted_dir / src, tmp / rel, "copy", root=accepted_dir)
        write_manifest(rows, tmp)
    _fault_point("batch")
    dvc(repo, "add", "-q", str(batch.relative_to(repo)))
    _fault_point("dvc_add")
    # Only what append changed, named: whatever else the user has staged stays theirs.
    ours = [str(dvc_file.relative_to(repo))]
    if gitignore.exists():
        ours.append(str(gitignore.relative_to(repo)))
    git(repo, "add", "--", *ours)
    git(repo, "commit", "-q", "-m", message, "--only", "--", *ours)
    _fault_point("commit")
    git(repo, "tag", tag)
    _fault_point("tag")


def _tagged(repo: Path, tag: str) -> bool:
    return bool(git(repo, "rev-parse", "-q", "--verify", f"refs/tags/{tag}", check=False).strip())


def _appended(repo: Path, tag: str, batch: Path, target: Path, dvc_file: Path) -> bool:
    """The version exists: its tag, or (a clone without tags) its batch folder committed as the
    set's tracked state. A folder a killed run left is never "appended": recover() removed it."""
    if _tagged(repo, tag):
        return True
    if not batch.is_dir():
        return False
    try:
        _check_tracked_and_clean(repo, target, dvc_file)
    except VersioningError:
        return False
    return True


def _write_journal(path: Path, entry: dict):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)


def _read_journal(repo: Path, journal: Path):
    """The journal's batch folder, tag, .dvc file, starting commit and entry, each proved to be
    what append makes (never trusted by name: a journal is a file anyone can write): the batch a
    direct child of `<target>/ganaug-batches` (resolved, links followed) for the target its .dvc
    file tracks, named by a batch id, and its tag that id's; the .dvc file inside the repository."""
    import re

    bad = f"{journal}: not a ganaug append journal; inspect it and remove it"
    try:
        entry = read_record(journal)  # a regular file, bounded, a JSON object
        batch_rel, tag, dvc_rel, head = entry["batch"], entry["tag"], entry["dvc_file"], entry["head"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VersioningError(f"{journal}: unreadable append journal ({e}); inspect `git status` and remove it") from None
    if not all(isinstance(v, str) for v in (batch_rel, tag, dvc_rel, head)):
        raise VersioningError(bad)
    root = repo.resolve()
    dvc_file = (repo / dvc_rel).resolve()
    batch = (repo / batch_rel).resolve()
    target = dvc_file.with_suffix("")
    if (dvc_file.suffix != ".dvc" or root not in dvc_file.parents or batch.parent != target / BATCHES_DIR
            or not re.fullmatch(r"[0-9a-f]{12}", batch.name) or tag != TAG_PREFIX + batch.name
            or not re.fullmatch(r"[0-9a-f]{40}", head)):
        raise VersioningError(bad)
    return batch, tag, dvc_file, head, entry


def recover(repo: Path) -> str | None:
    """Finish or undo the version a journal names: complete when its commit exists (tag it),
    else roll back to the commit before (batch folder removed, .dvc file and index restored).
    Returns what was done, None when there was no journal."""
    journal = repo / ".git" / JOURNAL
    if not journal.is_file():
        return None
    batch, tag, dvc_file, head, entry = _read_journal(repo, journal)
    # Committed: a commit after the journal's starting point carries the batch's message (later
    # commits, or a hook that appends to messages, do not hide it).
    messages = git(repo, "log", "--format=%B%x00", f"{head}..HEAD", check=False)
    committed = any(entry.get("message", "").strip() and m.strip().startswith(entry["message"].strip())
                    for m in messages.split("\x00"))
    if committed:
        if not _tagged(repo, tag):
            git(repo, "tag", tag)
        done = "completed"
    else:
        for left in (batch, *batch.parent.glob(f"{batch.name}.tmp-*")):  # a kill mid-copy leaves the temporary
            shutil.rmtree(left, ignore_errors=True)
        # Only what append changes: the target's .dvc file and the .gitignore beside it.
        gitignore = dvc_file.parent / ".gitignore"
        recorded = entry.get("gitignore")
        restore = [dvc_file] + ([gitignore] if isinstance(recorded, str) and (repo / recorded).resolve() == gitignore
                                else [])
        for path in restore:
            rel = str(path.relative_to(repo.resolve()))
            git(repo, "reset", "-q", "--", rel, check=False)
            git(repo, "checkout", "-q", head, "--", rel, check=False)
        done = "rolled back"
    journal.unlink()
    return done


def push(repo: Path, dvc_file: Path) -> dict:
    """`dvc push` when a remote is configured; a failure is reported, the commit stays."""
    if not dvc(repo, "remote", "list").strip():
        return {"pushed": None}
    try:
        dvc(repo, "push", "-q", str(dvc_file.relative_to(repo)))
    except VersioningError as e:
        return {"pushed": False, "push_error": str(e)}
    return {"pushed": True}


def _message(params: Params, bid: str, counts: dict[str, int]) -> str:
    f = params.filter
    rule = {"quantile": f"D score >= q{f.quantile} of held-out real", "absolute": f"D score >= {f.threshold}",
            "none": "no threshold"}[f.mode]
    per_class = ", ".join(f"{k}: {v}" for k, v in counts.items())
    return f"ganaug: append batch {bid} ({sum(counts.values())} synthetic images; {per_class}; {rule})"


def _repo_root(target: Path) -> Path:
    if not target.is_dir():
        raise DataError(f"{target}: append.target is not a folder")
    top = git(target, "rev-parse", "--show-toplevel", check=False).strip()
    if not top:
        raise VersioningError(f"{target}: not inside a git repository (append.target must be a DVC-tracked folder)")
    return Path(top)


def _check_tracked_and_clean(repo: Path, target: Path, dvc_file: Path):
    if not dvc_file.is_file():
        raise VersioningError(f"{target}: not DVC-tracked (no {dvc_file.name}); run `dvc add {target.name}` "
                              "and commit it first")
    if git(repo, "status", "--porcelain", "--", str(dvc_file.relative_to(repo))).strip():
        raise VersioningError(f"{dvc_file}: uncommitted changes in git; commit or revert them first")
    # dvc add may edit the .gitignore beside the target, which append then commits (or restores on
    # a rollback): a user's uncommitted edit there would be swept into ganaug's commit, or lost.
    gitignore = target.parent / ".gitignore"
    if gitignore.exists() and git(repo, "status", "--porcelain", "--", str(gitignore.relative_to(repo))).strip():
        raise VersioningError(f"{gitignore}: uncommitted changes in git (ganaug commits this file with its batch); "
                              "commit or revert them first")
    status = dvc(repo, "status", "--json", str(dvc_file.relative_to(repo)))
    if json.loads(status or "{}"):
        raise VersioningError(f"{target}: the folder differs from {dvc_file.name} (uncommitted changes); "
                              f"`dvc add {target.name}` and commit, or `dvc checkout {dvc_file.name}`")
