"""Hostile and careless inputs, one test per class of defect: each asserts the exit code, the
message, and that nothing outside the working folder changed (a listing before and after)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganaug.pipeline.plumbing.cli import main
from ganaug.pipeline.plumbing.errors import DataError
from ganaug.pipeline.store.manifest import read_manifest
from tests.conftest import make_shapes, prepared_pixels, sh, tiny_overrides


def listing(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under root (but not under skip) with its content hash and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.md5(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
    return out


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp/work is the user's working folder (cwd); tmp/outside holds a sentinel that must survive."""
    work = tmp_path / "work"
    make_shapes(work / "data" / "raw", {"circle": 8, "square": 8, "cross": 6})
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("the user's own file\n")
    monkeypatch.chdir(work)
    return work


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.err


def base(work: Path, **sections) -> list[str]:
    args = []
    for item in tiny_overrides(work, **sections):
        args += ["--set", item]
    return args + ["--set", f"paths.raw={work / 'data' / 'raw'}"]


# 1. Overlapping paths: refused before anything is touched.
@pytest.mark.parametrize("stage, override, words", [
    ("ingest", "paths.prepared=data", "contains paths.raw"),          # the folder holding the input
    ("ingest", "paths.prepared=data/raw", "is paths.raw"),            # the input itself
    ("ingest", "paths.prepared=.", "is the working folder"),
    ("ingest", "paths.prepared=data/raw/cross", "sits inside paths.raw"),
    ("append", "paths.augmented=data", "contains paths.prepared"),  # and raw, and the rest
    ("train", "paths.model=params.yaml", "params.yaml"),
    ("train", "paths.train_reports=reports", "is paths.reports/metrics.json"),  # evaluate's metrics.json
    ("generate", "paths.candidates=.git", ".git"),
])
def test_overlapping_outputs_are_refused_before_anything_is_touched(work, tmp_path, capsys, stage, override, words):
    (work / "params.yaml").write_text("ingest:\n  size: 8\n")
    (work / ".git").mkdir()
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = listing(tmp_path)
    code, err = cli(capsys, stage, *base(work), "--set", f"paths.{override.split('.', 1)[1]}"
                    if not override.startswith("paths.") else override)
    assert code == 2
    assert words in err and "error:" in err
    assert listing(tmp_path) == before


# 2. Paths from manifests, tables and .dvc texts stay inside their root.
@pytest.mark.parametrize("column, value", [("path", "../../outside/keep.txt"), ("path", "/etc/hostname"),
                                           ("sample_id", "../../../outside/evil")])
def test_manifest_paths_cannot_leave_their_folder(work, tmp_path, capsys, column, value):
    folder = work / "data" / "accepted"
    folder.mkdir(parents=True)
    rows = pd.DataFrame([{"sample_id": "a" * 20, "path": "images/circle/a.png", "label": "circle",
                          "split": "train", "source": "synthetic", "d_score": 1.0, "seed": 1, "checkpoint": "c"}])
    rows.loc[0, column] = value
    rows.to_parquet(folder / "manifest.parquet")  # as a hostile writer would, not through write_manifest
    assert cli(capsys, "ingest", *base(work))[0] == 0
    before = listing(tmp_path, skip=work / "data" / "accepted")
    with pytest.raises(DataError, match="climbs out|absolute|sample_id"):
        read_manifest(folder)
    code, err = cli(capsys, "append", *base(work), "--set", f"paths.accepted={folder}")
    assert code == 2 and str(folder / "manifest.parquet") in err
    assert listing(tmp_path, skip=work / "data" / "accepted") == before


@pytest.mark.parametrize("path", ["../outside/keep.txt", "/etc/hostname"])
def test_table_rows_cannot_read_outside_the_tables_folder(work, tmp_path, capsys, path):
    table = work / "data" / "raw" / "index.csv"
    rows = [f"{p.relative_to(table.parent)},{p.parent.name}" for p in sorted((work / "data" / "raw").rglob("*.png"))]
    table.write_text("path,label\n" + "\n".join(rows + [f"{path},circle"]) + "\n")
    code, err = cli(capsys, "ingest", *base(work), "--set", f"paths.raw={table}")
    assert code == 2 and "index.csv row" in err and ("climbs out" in err or "absolute" in err)
    assert not (work / "data" / "prepared").exists()


def test_exchange_receive_stays_in_its_slot(work, tmp_path):
    from ganaug.pipeline.store.exchange import receive

    before = listing(tmp_path)
    hostile = "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: ../../../outside/evil\n"
    with pytest.raises(DataError, match="climbs out|one plain name"):
        receive(hostile, "k", work / "dest", repo=work)
    for bad_key in ("../x", "a/b", ""):
        with pytest.raises(DataError, match="exchange key"):
            receive(hostile.replace("../../../outside/evil", "prepared"), bad_key, work / "dest", repo=work)
    with pytest.raises(DataError, match="not a .dvc text"):
        receive("just text", "k", work / "dest", repo=work)
    assert listing(tmp_path) == before


def test_init_writes_only_inside_the_repository(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    make_shapes(repo / "images", {"a": 5, "b": 5})
    monkeypatch.chdir(repo)
    before = listing(tmp_path)
    for argv in (["--dir", "../X", "--data", "images"], ["--dir", "/tmp/ganaug-x", "--data", "images"],
                 ["--dir", "augment", "--data", "../outside"]):
        code, err = cli(capsys, "init", *argv)
        assert code == 2 and "inside the repository" in err, argv
    assert listing(tmp_path) == before


# 4. Pixels: what real datasets contain is decoded correctly, or refused with a reason.
def _ingest_one(work: Path, capsys, make, name="x.png") -> np.ndarray:
    """Put one special image in the circle class, ingest at 24 px, return it as prepared."""
    special = work / "data" / "raw" / "circle" / name
    make(special)
    code, err = cli(capsys, "ingest", *base(work, ingest={"size": 32, "resize": "pad"}))
    assert code == 0, err
    m = read_manifest(work / "data" / "prepared")
    sid = hashlib.sha256(special.read_bytes()).hexdigest()[:20]
    pixels = prepared_pixels(work / "data" / "prepared")[int(np.flatnonzero(m["sample_id"] == sid)[0])]
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def test_sixteen_bit_png_keeps_its_grey_levels(work, capsys):
    ramp = (np.linspace(0, 65535, 32)[None, :].repeat(32, 0)).astype(np.uint16)
    out = _ingest_one(work, capsys, lambda p: Image.fromarray(ramp).save(p))
    assert len(np.unique(out)) > 20  # a ramp, not a 0/255 mask
    assert abs(int(out[16, 16]) - 128) < 10


def test_rgba_is_composited_so_a_shape_drawn_in_alpha_stays(work, capsys):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24, 3] = 255  # black square, visible only through alpha
    out = _ingest_one(work, capsys, lambda p: Image.fromarray(rgba, "RGBA").save(p))
    assert out[16, 16] < 30 and out[2, 2] > 220  # on white: the square shows


def test_exif_orientation_is_applied(work, capsys):
    img = np.zeros((32, 32), np.uint8)
    img[:, :8] = 255  # a bright band on the left as stored...

    def make(p):
        exif = Image.Exif()
        exif[0x0112] = 3  # ...rotated 180 degrees for display: the band is on the right
        Image.fromarray(img).save(p, format="JPEG", exif=exif.tobytes(), quality=95)

    out = _ingest_one(work, capsys, make, name="x.jpg")
    assert out[:, -6:].mean() > 200 and out[:, :6].mean() < 50


def test_integral_float_labels_are_class_names_not_floats(work, capsys):
    raw = work / "data" / "raw"
    files = sorted(raw.rglob("*.png"))
    codes = {"circle": 0.0, "square": 1.0, "cross": 2.0}
    pd.DataFrame({"path": [str(p.relative_to(raw)) for p in files],
                  "label": [codes[p.parent.name] for p in files]}).to_parquet(raw / "t.parquet")
    code, err = cli(capsys, "ingest", *base(work), "--set", f"paths.raw={raw / 't.parquet'}")
    assert code == 0, err
    assert set(read_manifest(work / "data" / "prepared")["label"]) == {"0", "1", "2"}
    pd.DataFrame({"path": [str(files[0].relative_to(raw))], "label": [0.5]}).to_parquet(raw / "f.parquet")
    code, err = cli(capsys, "ingest", *base(work), "--set", f"paths.raw={raw / 'f.parquet'}")
    assert code == 2 and "0.5" in err and "label" in err


def test_same_image_under_two_labels_is_not_silently_kept(work, capsys):
    raw = work / "data" / "raw"
    shutil.copy(raw / "circle" / "circle-000.png", raw / "square" / "also-a-square.png")
    code, err = cli(capsys, "ingest", *base(work))
    assert code == 0, err
    report = json.loads((work / "reports" / "ingest.json").read_text())
    reasons = {q["path"]: q["reason"] for q in report["quarantined"]}
    assert "listed under labels" in reasons[str(Path("circle") / "circle-000.png")]
    assert "listed under labels" in reasons[str(Path("square") / "also-a-square.png")]
    m = read_manifest(work / "data" / "prepared")
    assert hashlib.sha256((raw / "circle" / "circle-000.png").read_bytes()).hexdigest()[:20] not in set(m["sample_id"])
    code, err = cli(capsys, "ingest", *base(work, ingest={"on_bad_file": "fail"}))
    assert code == 2 and "listed under labels" in err


# 5. Params that are wrong are refused, in one line that names the key.
@pytest.mark.parametrize("argv, words", [
    (["--set", "train.steps=true"], "train.steps"),
    (["--set", "train.lr_g=yes"], "train.lr_g"),
    (["--set", "filter.dedupe=1"], "filter.dedupe"),
    (["--set", "x=@a"], "--set 'x=@a'"),
    (["--set", "train.steps=@a"], "cannot parse"),
    (["--set", "train.steps=[1"], "cannot parse"),
    (["--params", "../missing/params.yaml"], "params file not found"),
    (["--params", "."], "is a folder"),
    (["--params", "latin1.yaml"], "not UTF-8"),
])
def test_wrong_params_are_refused(work, tmp_path, capsys, argv, words):
    (work / "latin1.yaml").write_bytes("train:\n  steps: 5 # caf\xe9\n".encode("latin-1"))
    before = listing(tmp_path)
    code, err = cli(capsys, "params", *argv)
    assert code == 2 and words in err
    assert listing(tmp_path) == before


# 6. Tracebacks become messages: disk full, unwritable outputs, foreign checkpoints.
def test_disk_full_says_so_and_keeps_the_previous_output(work, capsys):
    code, err = cli(capsys, "ingest", *base(work))
    assert code == 0, err
    before = listing(work / "data" / "prepared")
    for i in range(40):  # a bigger input, so the write overflows a small file-size limit
        shutil.copy(work / "data" / "raw" / "circle" / "circle-000.png", work / "data" / "raw" / "circle" / f"n{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64), dtype=np.uint8)).save(
            work / "data" / "raw" / "circle" / f"n{i}.png")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill, as ENOSPC would be
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))

    done = subprocess.run([sys.executable, "-m", "ganaug.pipeline.plumbing.cli", "ingest", *base(work, ingest={"size": 32})],
                          cwd=work, capture_output=True, text=True, preexec_fn=limit)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "disk is full" in done.stderr and "intact" in done.stderr
    assert listing(work / "data" / "prepared") == before
    assert not list((work / "data").glob("prepared.tmp-*"))


def test_unwritable_output_is_found_before_training(work, capsys):
    (work / "models").write_text("a file where a folder should be\n")
    code, err = cli(capsys, "ingest", *base(work))
    assert code == 0
    code, err = cli(capsys, "train", *base(work), "--set", "train.steps=100000")
    assert code == 2 and "models" in err and "is a file, not a folder" in err
    assert (work / "models").read_text() == "a file where a folder should be\n"


def test_train_writes_its_checkpoint_only_over_a_checkpoint(work, capsys):
    """paths.model naming a user's file, with train.resume=false: refused before training, the
    file untouched (it was replaced by a checkpoint)."""
    (work / "notes.txt").write_text("keep me\n")
    assert cli(capsys, "ingest", *base(work))[0] == 0
    code, err = cli(capsys, "train", *base(work), "--set", "paths.model=notes.txt", "--set", "train.resume=false")
    assert code == 2 and "notes.txt" in err and "not a ganaug checkpoint" in err
    assert (work / "notes.txt").read_text() == "keep me\n"
    # Its own checkpoint it replaces, run after run.
    for _ in range(2):
        assert cli(capsys, "train", *base(work), "--set", "train.resume=false")[0] == 0


@pytest.mark.parametrize("tamper", ["widths", "format", "not_torch"])
def test_foreign_checkpoint_is_a_clear_error(trained, capsys, monkeypatch, tamper):
    model = Path(trained.paths.model)
    state = torch.load(model, weights_only=True)
    if tamper == "widths":
        state["config"]["width"] *= 2
        state.pop("best", None)
    elif tamper == "format":
        state["format"] = 99
    if tamper == "not_torch":
        model.write_bytes(b"PK\x03\x04 not a checkpoint")
    else:
        torch.save(state, model)
    monkeypatch.chdir(model.parent.parent)
    code, err = cli(capsys, "generate", *base(Path(trained.paths.raw).parent))
    assert code == 2 and str(model) in err
    assert {"widths": "does not fit", "format": "format", "not_torch": "cannot load"}[tamper] in err


# 7. Retries: transient is a property of the error, decided where it was raised.
def test_only_transient_errors_are_retried(tmp_path):
    from ganaug.flows.tasks import is_transient
    from ganaug.pipeline.plumbing.params import load_params
    from ganaug.pipeline.store.scm import VersioningError, git
    from ganaug.pipeline.train import TrainingError
    from ganaug.pipeline.store.versioned import _check_tracked_and_clean

    sh(tmp_path, "git", "init", "-q")
    with pytest.raises(VersioningError) as failed_command:
        git(tmp_path, "fetch", "no-such-remote")  # a git command that failed: may pass later
    assert is_transient(failed_command.value)
    (tmp_path / "train").mkdir()
    with pytest.raises(VersioningError) as untracked:
        _check_tracked_and_clean(tmp_path, tmp_path / "train", tmp_path / "train.dvc")
    assert "not DVC-tracked" in str(untracked.value) and not is_transient(untracked.value)
    assert not is_transient(TrainingError("loss is NaN"))
    assert not is_transient(DataError("bad"))
    with pytest.raises(Exception) as bad_params:
        load_params(None, ["train.steps=0"])
    assert not is_transient(bad_params.value)


# 8. Outputs respect the umask (a teammate, a DVC remote sync can read them).
def test_outputs_respect_the_umask(work, capsys):
    old = os.umask(0o002)
    try:
        code, err = cli(capsys, "ingest", *base(work))
    finally:
        os.umask(old)
    assert code == 0, err
    for f in (work / "data" / "prepared" / "manifest.parquet", work / "reports" / "ingest.json"):
        assert f.stat().st_mode & 0o777 == 0o664, f


def test_killed_mid_swap_the_previous_output_is_put_back(tmp_path):
    """SIGKILL between moving the old folder aside and renaming the new one in leaves no
    folder at the destination; the next write must restore the old one, not delete it."""
    from ganaug.pipeline.store.files import atomic_dir

    from ganaug.pipeline.store.files import OWNER, TMP_TOKEN

    dest = tmp_path / "prepared"
    aside = tmp_path / "prepared.tmp-old-999999999-1a2b3c4d"  # a dead process's, with its token
    aside.mkdir()
    (aside / "manifest.parquet").write_text("previous")
    (aside / OWNER).write_text(json.dumps({"made_by": "ganaug", "contents": ["manifest.parquet"]}))  # as sealed
    (aside / TMP_TOKEN).write_text(aside.name)
    new = tmp_path / "prepared.tmp-999999999-5e6f7a8b"  # the new one, never renamed in
    new.mkdir()
    (new / TMP_TOKEN).write_text(new.name)
    with pytest.raises(RuntimeError):
        with atomic_dir(dest):
            raise RuntimeError("killed again before finishing")
    assert (dest / "manifest.parquet").read_text() == "previous" and not (dest / TMP_TOKEN).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_a_link_is_dvcs_only_into_this_repositorys_own_cache(tmp_path):
    """A checked-out DVC output may be a link into the cache (cache.type symlink): ganaug's own
    file. A link into any other folder named .dvc/cache (a user's file planted as an image) is
    not, and never reaches the training set."""
    from ganaug.pipeline.store.files import check_own_file

    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    folder = repo / "data" / "accepted"
    folder.mkdir(parents=True)
    own = repo / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    other = tmp_path / "elsewhere" / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    for path, text in ((own, b"ganaug's image"), (other, b"the user's file")):
        path.parent.mkdir(parents=True)
        path.write_bytes(text)
    (folder / "a.png").symlink_to(own)
    (folder / "b.png").symlink_to(other)
    check_own_file(folder / "a.png", folder)  # DVC's own link: fine
    with pytest.raises(DataError, match="not a regular file ganaug wrote"):
        check_own_file(folder / "b.png", folder)


@pytest.mark.timeout(120)
def test_a_fifo_in_place_of_ganaugs_own_record_is_an_error_not_a_hang(work, capsys):
    """pixels.json replaced by a FIFO: opening it for reading would wait for a writer forever.
    Every record ganaug reads back goes through files.read_record: a regular file or an error."""
    assert cli(capsys, "ingest", *base(work))[0] == 0
    shape = work / "data" / "prepared" / "pixels.json"
    shape.unlink()
    os.mkfifo(shape)
    code, err = cli(capsys, "train", *base(work))
    assert code == 2 and "pixels.json" in err and "not a regular file" in err
