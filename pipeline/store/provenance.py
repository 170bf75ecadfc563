"""What each output was made from, recorded by the stage that wrote it and checked by the stages
that read it: a stage never acts on inputs that no longer belong together (accepted images of
candidates since generated again, a gate decision on another accepted set, a checkpoint of
other data, params other than the ones the data were made with). Each mismatch names the stage
to re-run.

A folder's record is its files.OWNER (`made_by`: the stage, and its inputs' identities); the
checkpoint's is in its `extra`; gate.json names the accepted set it judged.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..plumbing.errors import DataError
from .files import OWNER, own_record, owner_record
from .manifest import MANIFEST


def identity(folder: str | Path) -> str:
    """What a folder's contents are, for provenance: the hash of its manifest's bytes (the
    manifest lists every image, with its content hash or seed and checkpoint) and of the
    settings that shaped its pixels where its record (files.OWNER) holds them: ingest's size,
    channels, resize and background, which the manifest does not show. (A folder from before
    they were recorded keeps the identity it had.)"""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest here; run the stage that writes {folder} first")
    h = hashlib.sha256(path.read_bytes())
    settings = made_by(folder).get("settings")
    if settings is not None:
        h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def made_by(folder: str | Path) -> dict:
    """The provenance record a ganaug stage left in its output folder (files.OWNER), {} when
    there is none (made before ganaug kept one) or it is not a record (untrusted text)."""
    path = Path(folder) / OWNER
    try:
        return own_record(path) if (path.exists() or path.is_symlink()) else {}
    except (OSError, ValueError):
        return {}


def check_made_from(folder: str | Path, current: dict[str, str], rerun: str):
    """Refuse a folder made from other inputs than the current ones: e.g. accepted images
    filtered from candidates that have since been generated again. current: input name ->
    its identity now. Names the stage to re-run."""
    try:
        recorded = owner_record(Path(folder)).get("inputs")
    except ValueError as e:
        recorded, why = None, f"its {OWNER} record: {e}"
    else:
        why = f"its {OWNER} record lists no inputs"
    if not isinstance(recorded, dict):  # a missing record is no reason to skip the check
        raise DataError(f"{folder}: what it was made from is not known ({why}); re-run `ganaug {rerun}` (and the "
                        "stages after it)")
    for key, now in current.items():
        then = recorded.get(key)
        if then is not None and then != now:
            raise DataError(f"{folder} was made from another {key} than the current one (recorded {then}, now "
                            f"{now}): it is stale. Re-run `ganaug {rerun}` (and the stages after it)")
