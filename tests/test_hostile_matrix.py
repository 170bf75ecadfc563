"""Every file a stage reads, damaged every way a careless or hostile hand damages it (issue 28,
item 8): each case ends in ganaug's own clear error or a correct run, never a traceback or a
hang, with nothing outside the case's folder touched and every input byte-identical afterwards.

The matrix is generated: the files are those the stages read from the folders ganaug wrote
(their manifests, pixel arrays, OWNER records, the checkpoint, the gate's decision), each read
by the first stage downstream of it; the damages are the issue's list. One template pipeline
(ingest to evaluate at tiny settings) is built once; each case copies it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganaug.pipeline.filter import ACCEPT_ALL
from ganaug.pipeline.plumbing.errors import GanaugError
from ganaug.pipeline.stages import ALL, run
from tests.conftest import tiny_params


def _params(work: Path):
    """Tiny settings, every candidate accepted: evaluate and append read synthetic images."""
    return tiny_params(work, filter=dict(ACCEPT_ALL))

# file under the work folder -> the stage that reads it first
READ_BY = {
    "data/prepared/manifest.parquet": "train",
    "data/prepared/pixels.json": "train",
    "data/prepared/pixels.u8": "train",
    "data/prepared/.ganaug.json": "generate",
    "models/gan.pt": "generate",
    "data/candidates/manifest.parquet": "filter",
    "data/candidates/pixels.json": "filter",
    "data/candidates/pixels.u8": "filter",
    "data/candidates/.ganaug.json": "filter",
    "data/accepted/manifest.parquet": "evaluate",
    "data/accepted/pixels.json": "evaluate",
    "data/accepted/pixels.u8": "evaluate",
    "data/accepted/.ganaug.json": "evaluate",
    "reports/gate.json": "append",
}
HANG_S = 60  # a case still running after this is a hang


def _json_everywhere(obj, leaf):
    """obj with every leaf value replaced by leaf(value)."""
    if isinstance(obj, dict):
        return {k: _json_everywhere(v, leaf) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_everywhere(v, leaf) for v in obj]
    return leaf(obj)


def _rewrite(path: Path, *, json_leaf=None, frame=None):
    """A damaged copy of a ganaug file, of its own kind: JSON with its leaves replaced, a
    manifest with its columns replaced. None: the damage does not apply to this kind."""
    if path.suffix == ".json" or path.name == ".ganaug.json":
        if json_leaf is None:
            return None
        path.write_text(json.dumps(_json_everywhere(json.loads(path.read_text()), json_leaf)))
        return True
    if path.suffix == ".parquet":
        if frame is None:
            return None
        frame(pd.read_parquet(path)).to_parquet(path)
        return True
    return None


def _replace_with_link(path: Path, target_dir: Path):
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    shutil.copy2(path, target)
    path.unlink()
    path.symlink_to(target)
    return True


def _damage(kind: str, path: Path, outside: Path):
    """Damage path in place; None when the damage does not apply to this kind of file."""
    if kind == "missing":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "link out of the folder":
        return _replace_with_link(path, outside / "elsewhere")
    elif kind == "link into another .dvc/cache":
        return _replace_with_link(path, outside / "other-repo" / ".dvc" / "cache" / "ab")
    elif kind == "malformed":
        data = path.read_bytes()
        path.write_bytes(np.random.default_rng(0).integers(0, 256, max(len(data), 64), dtype=np.uint8).tobytes())
    elif kind == "wrong types":
        if path.suffix == ".pt":
            import torch
            torch.save({"label_map": [1, 2], "config": "x", "G_ema": 3}, path)
            return True
        return _rewrite(path, json_leaf=lambda v: [v] if not isinstance(v, list) else {"v": v},
                        frame=lambda df: df.assign(**{c: [[1]] * len(df) if c != "label" else 7 for c in df.columns}))
    elif kind == "paths with ..":
        return _rewrite(path, json_leaf=lambda v: "../../outside/x" if isinstance(v, str) else v,
                        frame=lambda df: df.assign(path=["../../outside/keep.txt"] * len(df)))
    elif kind == "huge values":
        if path.suffix == ".u8":
            with open(path, "ab") as f:  # more rows than pixels.json says
                f.write(b"\xff" * 10_000)
            return True
        return _rewrite(path, json_leaf=lambda v: 10 ** 18 if isinstance(v, (int, float)) and not isinstance(v, bool)
                        else v, frame=lambda df: df.assign(seed=[2 ** 62] * len(df)) if "seed" in df else
                        df.assign(label=["x" * 100_000] * len(df)))
    return True


KINDS = ["missing", "empty", "truncated", "fifo", "link out of the folder", "link into another .dvc/cache",
         "malformed", "wrong types", "paths with ..", "huge values"]
# The damages that mean something only for some kinds of file (by suffix; OWNER is JSON).
ONLY_FOR = {"wrong types": {".json", ".parquet", ".pt"}, "paths with ..": {".json", ".parquet"},
            "huge values": {".json", ".parquet", ".u8"}}
CASES = [(name, kind) for name in READ_BY for kind in KINDS
         if kind not in ONLY_FOR or (Path(name).suffix or ".json") in ONLY_FOR[kind]]


@pytest.fixture(scope="module")
def pipeline_template(trained_template, tmp_path_factory) -> Path:
    """ingest, train (the session's template), generate, filter and evaluate at tiny settings."""
    root = tmp_path_factory.mktemp("hostile") / "work"
    shutil.copytree(trained_template, root)
    p = _params(root)
    for stage in ("generate", "filter", "evaluate"):
        run(stage, p)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = b"link->" + os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def _alarm(*_):
    raise TimeoutError(f"still running after {HANG_S} s: a hang")


@pytest.mark.parametrize("name,kind", CASES)
def test_a_damaged_file_is_a_clear_error_or_fine(pipeline_template, tmp_path, name, kind):
    case = tmp_path / "case"
    work, outside = case / "work", case / "outside"
    shutil.copytree(pipeline_template, work, symlinks=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("the user's")
    assert _damage(kind, work / name, outside) is not None, f"{kind} has no way to damage {name}"
    stage = ALL[READ_BY[name]]
    p = _params(work)
    # What the stage writes (and the OWNER records of the report folders it writes into).
    writes = {Path(w.value(p)).resolve() for w in stage.writes if w.value(p)}
    writes |= {w.parent / ".ganaug.json" for w in writes}
    before, before_outside = _files(work), _files(outside)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        run(stage.name, p)
    except GanaugError as e:
        assert str(e), "an error without a message"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert _files(outside) == before_outside, "something outside the case's folder changed"
    after = _files(work)
    changed = [f for f in before if after.get(f) != before[f]
               and not any((work / f).resolve() == w or w in (work / f).resolve().parents for w in writes)]
    assert not changed, f"inputs changed: {changed[:5]}"


@pytest.mark.parametrize("field,value", [("history", ["x"]), ("history", [{"step": "3"}]), ("last_run", [1]),
                                         ("rng_ranks", "x")])
def test_a_checkpoint_whose_record_is_damaged_is_refused_by_name(trained, field, value):
    """The checkpoint's own record (what train goes on from) is read as untrusted: a damaged one
    is a CheckpointError naming the file, never a traceback later in the loop; the file stays."""
    import torch

    from ganaug.pipeline.plumbing.errors import CheckpointError

    path = Path(trained.paths.model)
    state = torch.load(path, weights_only=True)
    state["extra"][field] = value
    torch.save(state, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=str(path)):
        run("train", trained)
    assert path.read_bytes() == before
