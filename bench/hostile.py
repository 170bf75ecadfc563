"""Hostile and careless inputs, as a new user would try them, against today's code and a
baseline commit in the same run: per class of defect, how many cases end in a clear error,
a quarantine or a correct result (good), and how many in a traceback, a silent wrong result
or lost data (aim 0 each).

    python -m bench.hostile                       # baseline: d020617, main before issue 8
    python -m bench.hostile --baseline none       # today's code only

Every case is a `ganaug` command run as a subprocess (as a user runs it) in a fresh working
folder: data/raw (a small ImageFolder), params.yaml, a .git folder, and ../outside/keep.txt
beside it. "Data lost": a file that was there before (raw images, params.yaml, .git, the
file outside) changed or vanished. A file written outside the working folder, a refusal
that did not come, or pixels that are wrong count as silent wrong results. Cases that need
a trained pipeline copy one template, built once per code version with tiny params.
Classes 3 (versioned append: duplicates, race) and 7 (retries) are not CLI cases: 3 is
tested in tests/test_versioned.py; 7 is measured here on real error instances, in-process.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ganaug.pipeline.filter import ACCEPT_ALL  # noqa: E402
from ganaug.pipeline.plumbing.params import as_overrides, load_params  # noqa: E402
from ganaug.pipeline.store.pixels import open_pixels  # noqa: E402
from tests.conftest import make_shapes  # noqa: E402

TINY = ["ingest.size=8", "ingest.min_per_class=5", "train.steps=20", "train.batch_size=16", "train.width=8",
        "train.z_dim=16", "train.checkpoint_every=10", *as_overrides({"filter": ACCEPT_ALL}), "evaluate.epochs=1", "evaluate.repeats=1",
        "evaluate.width=8", "evaluate.min_gain=null", "evaluate.synthetic_shares=[1.0]",
        "paths.raw=data/raw"]


@dataclass
class Case:
    cls: str
    name: str
    argv: list[str]
    setup: callable = None          # (work folder) -> None, before the command
    expect: str = "error"           # error | ok | quarantine
    check: callable = None          # (work folder) -> bool: is an "ok" result right?
    trained: bool = False           # start from the trained template
    limit_fsize: int | None = None  # RLIMIT_FSIZE bytes: a disk that fills up
    umask: int | None = None
    pre: list = field(default_factory=list)  # ganaug commands run first (same code version)
    cwd: str = ""                   # run from this subfolder of the work folder
    timeout: int = 600              # seconds; past it the case is a hang


def _png(path: Path, arr: np.ndarray, mode=None, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path, **save) if mode else Image.fromarray(arr).save(path, **save)


def _special(name: str, make):
    def setup(work: Path):
        make(work / "data" / "raw" / "circle" / name)
    return setup


def _prepared_pixels(work: Path, name: str) -> np.ndarray | None:
    src = work / "data" / "raw" / "circle" / name
    sid = hashlib.sha256(src.read_bytes()).hexdigest()[:20]
    m = pd.read_parquet(work / "data" / "prepared" / "manifest.parquet")
    row = m[m["sample_id"] == sid]
    if row.empty:
        return None
    pixels = open_pixels(work / "data" / "prepared", len(m))[row.index[0]]  # ingest keeps one array
    return np.asarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def _quarantined(work: Path, fragment: str) -> bool:
    report = json.loads((work / "reports" / "ingest.json").read_text())
    return any(fragment in q["path"] for q in report["quarantined"])


def _rewrite_accepted(column, value):
    def setup(work: Path):
        f = work / "data" / "accepted" / "manifest.parquet"
        df = pd.read_parquet(f)
        df.loc[df.index[0], column] = value
        df.to_parquet(f)
    return setup


def _table(extra_row: str):
    def setup(work: Path):
        raw = work / "data" / "raw"
        rows = [f"{p.relative_to(raw)},{p.parent.name}" for p in sorted(raw.rglob("*.png"))]
        (raw / "index.csv").write_text("path,label\n" + "\n".join(rows + [extra_row]) + "\n")
    return setup


def _parquet_labels(labels):
    def setup(work: Path):
        raw = work / "data" / "raw"
        files = sorted(raw.rglob("*.png"))
        codes = {"circle": 0, "square": 1, "cross": 2}
        pd.DataFrame({"path": [str(p.relative_to(raw)) for p in files],
                      "label": [labels(codes[p.parent.name]) for p in files]}).to_parquet(raw / "t.parquet")
    return setup


def _labels_are(expected):
    return lambda work: set(pd.read_parquet(work / "data" / "prepared" / "manifest.parquet")["label"]) == expected


def _checkpoint(tamper):
    def setup(work: Path):
        import torch
        model = work / "models" / "gan.pt"
        if tamper == "garbage":
            model.write_bytes(b"\x80\x04 not a checkpoint")
            return
        if tamper == "code":  # a pickle that would run code if unpickled
            import pickle
            model.write_bytes(pickle.dumps(os.system))
            return
        state = torch.load(model, weights_only=True)
        if tamper == "widths":
            state["config"]["width"] *= 2
            state.pop("best", None)
        elif tamper == "format":
            state["format"] = 99
        elif tamper == "config":
            state["config"] = {"nonsense": 1}
        torch.save(state, model)
    return setup


def _modes_are(mode):
    def check(work: Path):
        files = [work / "data" / "prepared" / "manifest.parquet", work / "reports" / "ingest.json"]
        return all(f.stat().st_mode & 0o777 == mode for f in files)
    return check


def _ramp16(path):
    _png(path, np.linspace(0, 65535, 32)[None, :].repeat(32, 0).astype(np.uint16))


def _alpha_square(mode):
    def make(path):
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[8:24, 8:24, 3] = 255
        im = Image.fromarray(rgba, "RGBA")
        im = im.convert("LA") if mode == "LA" else im
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path)
    return make


def _palette_transparent(path):
    im = Image.new("P", (32, 32), 0)
    im.putpalette([0, 0, 0] * 256)
    im.paste(1, (8, 8, 24, 24))
    im.info["transparency"] = 0  # index 0 (the background) is transparent: the square is black on white
    im.save(path, transparency=0)


def _exif(orientation):
    def make(path):
        img = np.zeros((32, 32), np.uint8)
        img[:, :8] = 255
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(img).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return make


def _band_moved(side):
    def check(work):
        a = _prepared_pixels(work, "x.jpg")
        if a is None:
            return False
        a = a[:, :, 0] if a.ndim == 3 else a
        band = {"right": a[:, -3:], "top": a[:3, :]}[side]
        return band.mean() > 180
    return check


def _dark_square_on_white(name):
    def check(work):
        a = _prepared_pixels(work, name)
        return a is not None and a[16, 16] < 40 and a[1, 1] > 215
    return check


def cases() -> list[Case]:
    c: list[Case] = []
    # 1. Overlapping paths.
    for what, override, trained in [
        ("prepared = the folder holding raw", "paths.prepared=data", False),
        ("prepared = raw", "paths.prepared=data/raw", False),
        ("prepared = .", "paths.prepared=.", False),
        ("prepared = ..", "paths.prepared=..", False),
        ("prepared inside raw", "paths.prepared=data/raw/circle", False),
        ("reports inside raw", "paths.reports=data/raw/circle", False),
        ("prepared = .git", "paths.prepared=.git", False),
    ]:
        c.append(Case("1 overlap", what, ["ingest", "--set", override]))
    for what, stage, override in [
        ("augmented = prepared", "append", "paths.augmented=data/prepared"),
        ("accepted = candidates", "filter", "paths.accepted=data/candidates"),
        ("candidates = raw", "generate", "paths.candidates=data/raw"),
        ("model = params.yaml", "train", "paths.model=params.yaml"),
        ("train_reports = reports (metrics.json clash)", "train", "paths.train_reports=reports"),
        ("model inside raw", "train", "paths.model=data/raw/circle/gan.pt"),
    ]:
        c.append(Case("1 overlap", what, [stage, "--set", override], trained=True))
    c.append(Case("1 overlap", "demo = .", ["demo-data", "--set", "paths.demo=."]))

    # 2. Reading or writing outside the folders.
    for what, column, value in [("accepted path ../", "path", "../../../outside/keep.txt"),
                                ("accepted path absolute", "path", "/etc/hostname"),
                                ("accepted sample_id ../", "sample_id", "../../../outside/evil")]:
        c.append(Case("2 outside", what, ["append"], setup=_rewrite_accepted(column, value), trained=True))
    c.append(Case("2 outside", "table path ../", ["ingest", "--set", "paths.raw=data/raw/index.csv"],
                  setup=_table("../../../outside/keep.txt,circle")))
    c.append(Case("2 outside", "table path absolute", ["ingest", "--set", "paths.raw=data/raw/index.csv"],
                  setup=_table("/etc/hostname,circle")))
    c.append(Case("2 outside", "init --dir ../X", ["init", "--dir", "../X", "--data", "data/raw"]))
    c.append(Case("2 outside", "init --dir /abs", ["init", "--dir", "/tmp/ganaug-hostile-abs", "--data", "data/raw"]))
    c.append(Case("2 outside", "init --data ../outside", ["init", "--dir", "aug", "--data", "../outside"]))

    # 4. Pixels.
    c.append(Case("4 pixels", "16-bit PNG ramp", ["ingest", "--set", "ingest.size=32"], setup=_special("x.png", _ramp16),
                  expect="ok", check=lambda w: (a := _prepared_pixels(w, "x.png")) is not None and len(np.unique(a)) > 20))
    c.append(Case("4 pixels", "16-bit TIFF ramp", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.tif", _ramp16),
                  expect="ok", check=lambda w: (a := _prepared_pixels(w, "x.tif")) is not None and len(np.unique(a)) > 20))
    for mode in ("RGBA", "LA"):
        c.append(Case("4 pixels", f"{mode}: shape drawn in alpha", ["ingest", "--set", "ingest.size=32"],
                      setup=_special("x.png", _alpha_square(mode)), expect="ok", check=_dark_square_on_white("x.png")))
    c.append(Case("4 pixels", "palette with a transparent index", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.png", _palette_transparent), expect="ok", check=_dark_square_on_white("x.png")))
    c.append(Case("4 pixels", "EXIF orientation 3 (180)", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.jpg", _exif(3)), expect="ok", check=_band_moved("right")))
    c.append(Case("4 pixels", "EXIF orientation 6 (90 CW)", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.jpg", _exif(6)), expect="ok", check=_band_moved("top")))
    c.append(Case("4 pixels", "CMYK JPEG", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.jpg", lambda p: Image.new("CMYK", (32, 32), (0, 0, 0, 255)).save(p)),
                  expect="ok", check=lambda w: (a := _prepared_pixels(w, "x.jpg")) is not None and a.max() < 40))
    c.append(Case("4 pixels", "1-bit PNG", ["ingest", "--set", "ingest.size=32"],
                  setup=_special("x.png", lambda p: Image.fromarray(np.eye(32, dtype=bool)).save(p)),
                  expect="ok", check=lambda w: (a := _prepared_pixels(w, "x.png")) is not None and a.max() == 255))
    c.append(Case("4 pixels", "float32 TIFF (no known range)", ["ingest"],
                  setup=_special("x.tif", lambda p: Image.fromarray(np.full((32, 32), 3.7, np.float32)).save(p)),
                  expect="quarantine", check=lambda w: _quarantined(w, "x.tif")))
    c.append(Case("4 pixels", "Parquet float labels 0.0/1.0/2.0", ["ingest", "--set", "paths.raw=data/raw/t.parquet"],
                  setup=_parquet_labels(float), expect="ok", check=_labels_are({"0", "1", "2"})))
    c.append(Case("4 pixels", "Parquet labels 0.5/1.5/2.5", ["ingest", "--set", "paths.raw=data/raw/t.parquet"],
                  setup=_parquet_labels(lambda k: k + 0.5)))
    c.append(Case("4 pixels", "Parquet boolean labels", ["ingest", "--set", "paths.raw=data/raw/t.parquet"],
                  setup=_parquet_labels(lambda k: k == 0)))
    c.append(Case("4 pixels", "same file under two labels", ["ingest"],
                  setup=lambda w: shutil.copy(w / "data/raw/circle/circle-000.png", w / "data/raw/square/dup.png"),
                  expect="quarantine", check=lambda w: _quarantined(w, "dup.png") and _quarantined(w, "circle-000")))

    # 5. Params.
    def latin1(work):
        (work / "latin1.yaml").write_bytes("train:\n  steps: 5 # caf\xe9\n".encode("latin-1"))

    def a_list(work):
        (work / "list.yaml").write_text("- train\n- steps\n")
    for what, argv, setup in [
        ("train.steps=true", ["--set", "train.steps=true"], None),
        ("train.lr_g=yes", ["--set", "train.lr_g=yes"], None),
        ("filter.dedupe=1", ["--set", "filter.dedupe=1"], None),
        ("--set x=@a", ["--set", "x=@a"], None),
        ("--set train.steps=@a", ["--set", "train.steps=@a"], None),
        ("--set train.steps=[1", ["--set", "train.steps=[1"], None),
        ("--params ../missing/params.yaml", ["--params", "../missing/params.yaml"], None),
        ("--params . (a folder)", ["--params", "."], None),
        ("--params latin-1 file", ["--params", "latin1.yaml"], latin1),
        ("--params a YAML list", ["--params", "list.yaml"], a_list),
    ]:
        c.append(Case("5 params", what, ["params", *argv], setup=setup))

    # 6. Tracebacks: disk full, unwritable outputs, foreign checkpoints.
    def grow(work):
        for i in range(40):
            _png(work / "data/raw/circle" / f"n{i}.png", np.random.default_rng(i).integers(0, 255, (64, 64), np.uint8))
    c.append(Case("6 tracebacks", "disk full during ingest", ["ingest", "--set", "ingest.size=32"], setup=grow,
                  limit_fsize=300))
    c.append(Case("6 tracebacks", "disk full writing the checkpoint", ["train", "--set", "train.steps=30"],
                  trained=True, limit_fsize=20_000))
    c.append(Case("6 tracebacks", "models/ is a file", ["train", "--set", "train.steps=30"], trained=True,
                  setup=lambda w: (shutil.rmtree(w / "models"), (w / "models").write_text("x"))))
    c.append(Case("6 tracebacks", "prepared is a file", ["ingest"],
                  setup=lambda w: (w / "data" / "prepared").write_text("x")))
    for tamper in ("widths", "format", "config", "garbage", "code"):
        c.append(Case("6 tracebacks", f"checkpoint: {tamper}", ["generate"], setup=_checkpoint(tamper), trained=True))

    c += issue15_cases()
    c += issue28_cases()

    # 8. Modes.
    for mask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        c.append(Case("8 umask", f"umask {mask:03o} -> {mode:o}", ["ingest"], umask=mask, expect="ok",
                      check=_modes_are(mode)))
    return c


def _user_folder(work: Path):
    (work / "notes").mkdir()
    (work / "notes" / "thesis.tex").write_text("months of work\n")


def _table_all(work: Path):
    raw = work / "data" / "raw"
    rows = [f"{p.relative_to(raw)},{p.parent.name}" for p in sorted(raw.rglob("*.png"))]
    (raw / "index.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


def _link_in_accepted(work: Path):
    shutil.rmtree(work / "data" / "augmented")  # append must build it (else: already up to date)
    m = pd.read_parquet(work / "data" / "accepted" / "manifest.parquet")
    victim = work / "data" / "accepted" / m["path"].iloc[0]
    victim.unlink()
    victim.symlink_to((work.parent / "outside" / "keep.txt").resolve())


def _unicode_classes(work: Path):
    import unicodedata
    raw = work / "data" / "raw"
    for form, seed in (("NFC", 1), ("NFD", 2)):
        make_shapes(work / "tmp", {"square": 3}, seed=seed)
        os.replace(work / "tmp" / "square", raw / unicodedata.normalize(form, "café"))
    shutil.rmtree(work / "tmp")


def _colour_only_classes(work: Path):
    raw = work / "data" / "raw"
    shutil.rmtree(raw)
    for name, colour in (("red", (200, 0, 0)), ("green", (0, 102, 0))):  # one grey: luma 60
        (raw / name).mkdir(parents=True)
        for i in range(6):
            im = Image.new("RGB", (16, 16), (255, 255, 255))
            im.paste(colour, (2 + i, 2, 10, 10))
            im.save(raw / name / f"{i}.png")


def _gif_two_frames(work: Path):
    frames = [Image.new("L", (16, 16), v) for v in (0, 255)]
    frames[0].save(work / "data" / "raw" / "circle" / "anim.gif", save_all=True, append_images=frames[1:])


def _hash_dir(work: Path):
    shutil.copytree(work / "data" / "raw", work / "data" / "raw #2")
    for p in (work / "data" / "raw #2").rglob("*.png"):  # another dataset: inverted
        Image.fromarray(255 - np.asarray(Image.open(p))).save(p)


def issue15_cases() -> list[Case]:
    """Issue 15's classes, with instances of our own (none a repeat of the issue's text)."""
    c: list[Case] = []
    # 9. Outputs replace what ganaug never made.
    c.append(Case("9 ownership", "from a subfolder: prepared=../.git", ["ingest", "--set", "paths.raw=../data/raw",
                  "--set", "paths.prepared=../.git"], setup=lambda w: (w / "sub").mkdir(), cwd="sub"))
    c.append(Case("9 ownership", "from a subfolder: model=../dvc.lock", ["train", "--set", "paths.prepared=../data/prepared",
                  "--set", "paths.model=../dvc.lock"], trained=True,
                  setup=lambda w: ((w / "sub").mkdir(), (w / "dvc.lock").write_text("lock\n")), cwd="sub"))
    c.append(Case("9 ownership", "prepared = a folder of the user's", ["ingest", "--set", "paths.prepared=notes"],
                  setup=_user_folder))
    c.append(Case("9 ownership", "candidates = a folder of the user's", ["generate", "--set", "paths.candidates=notes"],
                  setup=_user_folder, trained=True))
    c.append(Case("9 ownership", "table lists it: prepared=data/raw/square",
                  ["ingest", "--set", "paths.raw=data/raw/index.csv", "--set", "paths.prepared=data/raw/square"],
                  setup=_table_all))
    c.append(Case("9 ownership", "table lists it: accepted=data/raw/cross",
                  ["filter", "--set", "paths.accepted=data/raw/cross"], trained=True))
    c.append(Case("9 ownership", "init --dir . over the repo's params.yaml", ["init", "--dir", ".", "--data", "data/raw"]))
    c.append(Case("9 ownership", "a file named like a temporary", ["ingest"], expect="ok",
                  setup=lambda w: (w / "data" / "prepared.tmp-plan.txt").write_text("mine\n"),
                  check=lambda w: (w / "data" / "prepared.tmp-plan.txt").read_text() == "mine\n"))
    # 10. Outputs know what they were made from.
    c.append(Case("10 provenance", "append after generate+filter with another seed", ["append"], trained=True,
                  pre=[["generate", "--set", "generate.seed=5"], ["filter", "--set", "generate.seed=5"]]))
    c.append(Case("10 provenance", "evaluate after generate+filter with another seed: fine", ["evaluate"],
                  trained=True, pre=[["generate", "--set", "generate.seed=5"], ["filter", "--set", "generate.seed=5"]],
                  expect="ok", check=lambda w: json.loads((w / "reports" / "gate.json").read_text())["judged"]))
    c.append(Case("10 provenance", "generate with ingest.size=16 on an 8 px set", ["generate", "--set", "ingest.size=16"],
                  trained=True))
    c.append(Case("10 provenance", "filter on a checkpoint of other data", ["filter"], trained=True,
                  setup=lambda w: make_shapes(w / "data" / "raw", {"circle": 2}, seed=11), pre=[["ingest"]]))
    c.append(Case("10 provenance", "re-ingest the augmented set: no real image lost", ["ingest", "--set",
                  "paths.raw=data/augmented", "--set", "paths.prepared=data/prepared2"], trained=True,
                  expect="ok",  # ganaug's own carve-outs are not taken for the user's split
                  check=lambda w: not pd.read_parquet(w / "data/prepared2/manifest.parquet")["split_given"].any()))
    # 11. Links in ganaug's own folders.
    c.append(Case("11 links", "accepted image -> ../outside/keep.txt", ["append"], trained=True,
                  setup=_link_in_accepted))
    # 12. Inputs normalized and reported.
    c.append(Case("12 inputs", "café in NFC and NFD: one class", ["ingest"], setup=_unicode_classes, expect="ok",
                  check=lambda w: set(pd.read_parquet(w / "data/prepared/manifest.parquet")["label"])
                  == {"circle", "square", "cross", "café"} and "labels_normalized" in
                  json.loads((w / "reports/ingest.json").read_text())["warnings"]))
    c.append(Case("12 inputs", "classes apart by colour only, channels=1", ["ingest", "--set", "ingest.size=16"],
                  setup=_colour_only_classes))
    c.append(Case("12 inputs", "two-frame GIF: reported", ["ingest"], setup=_gif_two_frames, expect="ok",
                  check=lambda w: "multi_frame" in json.loads((w / "reports/ingest.json").read_text())["warnings"]))
    # 13. Params as DVC reads them.
    c.append(Case("13 params", "paths.raw with ' #'", ["ingest", "--set", "paths.raw=data/raw #2"], setup=_hash_dir,
                  expect="ok", check=lambda w: json.loads((w / "reports/ingest.json").read_text())["source"]
                  == "data/raw #2"))
    c.append(Case("13 params", "params.yaml with ingest twice", ["ingest"],
                  setup=lambda w: (w / "params.yaml").write_text("paths:\n  raw: data/raw\ningest:\n  size: 16\n"
                                                                 "ingest:\n  seed: 3\n")))
    c.append(Case("13 params", "train.lr_d=.nan", ["params", "--set", "train.lr_d=.nan"]))
    c.append(Case("13 params", "evaluate.seed=2**32", ["evaluate", "--set", "evaluate.seed=4294967296"], trained=True))
    c.append(Case("13 params", "evaluate.device=cuda:3 on this machine", ["evaluate", "--set", "evaluate.device=cuda:3"],
                  trained=True))
    c.append(Case("13 params", "paths.reports empty", ["ingest", "--set", "paths.reports="]))
    # 14. Hangs: only regular files are opened.
    c.append(Case("14 hangs", "--params a FIFO", ["params", "--params", "p.fifo"], setup=lambda w: os.mkfifo(w / "p.fifo"),
                  timeout=30))
    c.append(Case("14 hangs", "a FIFO in the image folder's table", ["ingest", "--set", "paths.raw=data/raw/index.csv"],
                  setup=lambda w: (os.mkfifo(w / "data/raw/circle/p.png"), _table_all(w)), timeout=60,
                  expect="quarantine", check=lambda w: _quarantined(w, "p.png")))
    # 15. Reports and messages.
    c.append(Case("15 reports", "train.steps=10 on a 20-step checkpoint", ["train", "--set", "train.steps=10"],
                  trained=True))
    c.append(Case("15 reports", "corrupt prepared manifest", ["train"], trained=True,
                  setup=lambda w: (w / "data/prepared/manifest.parquet").write_bytes(b"PAR1 garbage PAR1")))
    # Second round (the review's classes, new instances).
    c.append(Case("9 ownership", "reports = a folder with the user's own ingest.json",
                  ["ingest", "--set", "paths.reports=notes"],
                  setup=lambda w: (_user_folder(w), (w / "notes" / "ingest.json").write_text('{"mine": 1}\n'))))
    c.append(Case("9 ownership", "a flat table beside its images, prepared beside them", ["ingest", "--set",
                  "paths.raw=data/flat/labels.csv", "--set", "paths.prepared=data/flat/prepared"],
                  setup=_flat_table, expect="ok",
                  check=lambda w: len(pd.read_parquet(w / "data/flat/prepared/manifest.parquet")) == 22))
    c.append(Case("10 provenance", "re-ingest with resize=pad, train, generate: trained afresh", ["generate",
                  "--set", "ingest.resize=pad"], trained=True,
                  pre=[["ingest", "--set", "ingest.resize=pad"], ["train", "--set", "ingest.resize=pad"]],
                  expect="ok", check=lambda w: json.loads((w / "reports/train/metrics.json").read_text())
                  ["resumed_from"] == 0))
    c.append(Case("12 inputs", "one picture thrice, twice as circle, once as square", ["ingest"],
                  setup=_one_picture_thrice, expect="quarantine",
                  check=lambda w: all(_quarantined(w, f"same-{i}.png") for i in range(3))))
    c.append(Case("12 inputs", "a class named aux: reported", ["ingest"],
                  setup=lambda w: make_shapes(w / "data" / "raw", {"aux": 6}, seed=4), expect="ok",
                  check=lambda w: "aux" in json.loads((w / "reports/ingest.json").read_text())["warnings"]
                  .get("labels_not_portable", {})))
    return c


def _owner_copied_into_users_folder(work: Path):
    """The user's photos in data/mine, with a copy of ganaug's record of data/prepared."""
    mine = work / "data" / "mine"
    make_shapes(mine / "images", {"cat": 3}, seed=5)
    (mine / "labels.csv").write_text("cat\n")
    shutil.copy(work / "data" / "prepared" / ".ganaug.json", mine / ".ganaug.json")


def _in_place_repo(work: Path):
    """The work folder as a user's ML repository: git, DVC, data/raw tracked and committed."""
    shutil.rmtree(work / ".git")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "add", "-q", "data/raw"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "v1"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)


def _journal_climbing_out(work: Path):
    """The issue's journal: its batch path climbs out of ganaug's batches to data/raw itself."""
    _in_place_repo(work)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    (work / ".git" / "ganaug-append.json").write_text(json.dumps({
        "batch": "data/raw/ganaug-batches/../../raw", "tag": "ganaug-000000000000", "dvc_file": "data/raw.dvc",
        "head": head, "message": "x"}))


def _users_gitignore_edit(work: Path):
    """An uncommitted line of the user's in the .gitignore beside the tracked set."""
    _in_place_repo(work)
    with open(work / "data" / ".gitignore", "a") as f:
        f.write("*.bak\n")


def _reshaped_pixels(work: Path):
    """The issue's instance at TINY's 8 px: pixels.json says 16x4, the bytes an image holds."""
    shutil.rmtree(work / "data" / "augmented")
    meta = json.loads((work / "data" / "prepared" / "pixels.json").read_text())
    (work / "data" / "prepared" / "pixels.json").write_text(json.dumps({**meta, "shape": [16, 4, 1]}))


def _noise_of_the_same_size(work: Path):
    data = work / "data" / "prepared" / "pixels.u8"
    data.write_bytes(np.random.default_rng(0).integers(0, 256, data.stat().st_size, dtype=np.uint8).tobytes())


def _labels_swapped_by_hand(work: Path):
    path = work / "data" / "prepared" / "manifest.parquet"
    df = pd.read_parquet(path)
    df["label"] = df["label"].sample(frac=1.0, random_state=0).to_numpy()
    df.to_parquet(path)


def issue28_cases() -> list[Case]:
    """Issue 28's instances (reproduced on 6056117) and the new by-construction checks."""
    c = []
    c.append(Case("1 identity", "a user's backup named like a temporary", ["ingest"], expect="ok", trained=True,
                  setup=lambda w: shutil.copytree(w / "data/prepared", w / "data/prepared.tmp-20240101"),
                  check=lambda w: (w / "data/prepared.tmp-20240101/manifest.parquet").is_file()))
    c.append(Case("1 identity", "an OWNER record copied into the user's folder", ["ingest", "--set",
                  "paths.prepared=data/mine"], trained=True, setup=_owner_copied_into_users_folder))
    c.append(Case("2 records", "pixels.json: the same bytes as 16x4 images, append", ["append"], trained=True,
                  setup=_reshaped_pixels))
    c.append(Case("2 records", "pixels.u8 overwritten with noise of its size", ["train"], trained=True,
                  setup=_noise_of_the_same_size))
    c.append(Case("2 records", "prepared manifest's labels swapped by hand", ["train"], trained=True,
                  setup=_labels_swapped_by_hand))
    c.append(Case("2 records", "candidates' OWNER record deleted", ["filter"], trained=True,
                  setup=lambda w: (w / "data/candidates/.ganaug.json").unlink()))
    c.append(Case("3 decisions", "append under min_gain=0.5, gate decided under null", ["append", "--set",
                  "evaluate.min_gain=0.5"], trained=True, setup=lambda w: shutil.rmtree(w / "data/augmented")))
    c.append(Case("5 file outputs", "paths.model=.gitignore", ["train", "--set", "paths.model=.gitignore", "--set",
                  "train.resume=false"], trained=True, setup=lambda w: (w / ".gitignore").write_text("keepme\n")))
    c.append(Case("1 identity", "in place: a journal whose batch climbs out to data/raw", ["append", "--set",
                  "append.target=data/raw"], trained=True, setup=_journal_climbing_out))
    c.append(Case("4 git", "in place: the user's uncommitted .gitignore line", ["append", "--set",
                  "append.target=data/raw"], trained=True, setup=_users_gitignore_edit))
    for knob in ("train.lr_d=1e308", "evaluate.bootstrap=1000000000000", "generate.truncation=1e-300"):
        c.append(Case("7 bounds", knob, ["params", "--set", knob]))
    return c


def _flat_table(work: Path):
    """data/flat/labels.csv listing x.png: the images beside the table, no class folders."""
    flat = work / "data" / "flat"
    flat.mkdir(parents=True)
    rows = []
    for p in sorted((work / "data" / "raw").rglob("*.png")):
        shutil.copy(p, flat / f"{p.parent.name}-{p.name}")
        rows.append(f"{p.parent.name}-{p.name},{p.parent.name}")
    (flat / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


def _one_picture_thrice(work: Path):
    same = Image.new("L", (24, 24), 90)
    for i, label in enumerate(("circle", "circle", "square")):
        same.save(work / "data" / "raw" / label / f"same-{i}.png", compress_level=i + 1)  # other bytes


@dataclass
class Code:
    """How to run one version of ganaug's CLI."""
    label: str
    module: str
    env: dict = field(default_factory=dict)


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def fresh(root: Path) -> Path:
    work = root / "work"
    make_shapes(work / "data" / "raw", {"circle": 8, "square": 8, "cross": 6})
    (work / "params.yaml").write_text("paths:\n  raw: data/raw\n")
    (work / ".git").mkdir()
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "outside").mkdir()
    (root / "outside" / "keep.txt").write_text("the user's own file\n")
    return work


def command(code: Code, work: Path, argv: list[str], case: Case | None = None, timeout: int = 600):
    tiny = [] if argv[0] in ("params", "init") else [a for t in TINY for a in ("--set", t)]

    def limits():
        if case and case.limit_fsize:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.limit_fsize, case.limit_fsize))
        if case and case.umask is not None:
            os.umask(case.umask)
    if argv[0] == "init":
        subprocess.run(["git", "init", "-q"], cwd=work, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=work, check=True)
    if case and case.cwd:  # the TINY paths are relative to the work folder
        tiny = [a.replace("paths.raw=data/raw", "paths.raw=../data/raw") for a in tiny]
    try:
        return subprocess.run([sys.executable, "-m", code.module, argv[0], *tiny, *argv[1:]],
                              cwd=work / (case.cwd if case else ""), capture_output=True, text=True,
                              preexec_fn=limits, env={**os.environ, "OMP_NUM_THREADS": "1", **code.env},
                              timeout=case.timeout if case else timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, "hang", "", f"no answer in {e.timeout} s")


def _own_outputs(case: Case, work: Path) -> list[str]:
    """What the case's stage itself writes (relative to work): rewriting those is its job, not
    a loss. From the registry and the case's own --set values, as the stage resolves them."""
    from ganaug.pipeline.stages import ALL

    stage = ALL.get(case.argv[0])
    if stage is None:
        return []
    sets = [a for i, a in enumerate(case.argv) if i and case.argv[i - 1] == "--set"]
    try:
        p = load_params(None, TINY + sets)
    except Exception:
        return []
    base = work / case.cwd if case.cwd else work
    return [os.path.relpath((base / v).resolve(), work.resolve()) for q in stage.writes
            if (v := q.value(p)) is not None]


def classify(case: Case, done, work: Path, root: Path, before: dict, outside_before: dict) -> str:
    if done.returncode == "hang":
        return "hang"
    after = listing(work)
    own = _own_outputs(case, work) if done.returncode == 0 and case.expect != "error" else []
    lost = [k for k, v in before.items() if after.get(k) != v and not k.startswith((".dvc", ".git/"))
            and not any(k == o or k.startswith(o.rstrip("/") + "/") for o in own)]
    if listing(root / "outside") != outside_before or lost:
        return "data lost"
    wrote_outside = sorted(set(p.name for p in root.iterdir()) - {"work", "outside"})
    if wrote_outside or Path("/tmp/ganaug-hostile-abs").exists():
        shutil.rmtree("/tmp/ganaug-hostile-abs", ignore_errors=True)
        return "silent wrong"
    if "Traceback" in done.stderr or done.returncode not in (0, 2):
        return "traceback"
    if case.expect == "error":
        return "clear error" if done.returncode == 2 else "silent wrong"
    if done.returncode != 0:
        return "refused"
    try:
        right = case.check(work)
    except Exception:
        right = False
    if not right:
        return "silent wrong"
    return "quarantined" if case.expect == "quarantine" else "correct"


def run_all(code: Code, tmp: Path, only: str = "") -> list[tuple[Case, str, str]]:
    """Every case (or those whose name holds `only`) under one version of the code."""
    template = tmp / f"template-{code.label}"
    work = fresh(template)
    for stage in ("ingest", "train", "generate", "filter", "evaluate", "append"):
        done = command(code, work, [stage])
        assert done.returncode == 0, f"{code.label} {stage}: {done.stderr[-2000:]}"
    results = []
    for i, case in enumerate(cases()):
        if only not in case.name:
            continue
        root = tmp / f"{code.label}-{i}"
        if case.trained:
            shutil.copytree(template, root, symlinks=True)
            work = root / "work"
        else:
            work = fresh(root)
        if case.setup:
            case.setup(work)
        for pre in case.pre:
            command(code, work, pre)
        before, outside = listing(work), listing(root / "outside")
        done = command(code, work, case.argv, case)
        verdict = classify(case, done, work, root, before, outside)
        lines = [ln.rsplit("\r", 1)[-1] for ln in done.stderr.strip().splitlines()]
        lines = [ln for ln in lines if ln.strip() and "it/s]" not in ln and "%|" not in ln]
        last = (lines or [""])[-1][:160]
        results.append((case, verdict, last))
        print(f"[{code.label}] {case.cls:<13} {case.name:<44} {verdict:<13} {last}", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return results


def retries_table() -> dict:
    """Class 7 on real error instances: does the retry rule retry what cannot succeed?"""
    from ganaug.flows.tasks import is_transient
    from ganaug.pipeline.plumbing.errors import CheckpointError, DataError, ParamsError
    from ganaug.pipeline.store.scm import VersioningError, git
    from ganaug.pipeline.train import TrainingError
    from ganaug.pipeline.store.versioned import _check_tracked_and_clean

    errors: dict[str, tuple[BaseException, bool]] = {}  # name -> (instance, retrying can help)
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / "train").mkdir()
        try:
            _check_tracked_and_clean(repo, repo / "train", repo / "train.dvc")
        except VersioningError as e:
            errors["not DVC-tracked"] = (e, False)
        try:
            git(repo, "fetch", "https://127.0.0.1:9/none.git")
        except VersioningError as e:
            errors["git fetch from an unreachable remote"] = (e, True)
    errors["another append holds the lock"] = (VersioningError("another append holds .git/ganaug-append.lock"), False)
    errors["NaN loss"] = (TrainingError("loss is NaN at step 12"), False)
    errors["a bug (KeyError)"] = (KeyError("x"), False)

    def old_rule(e):  # main before issue 8: retry every error that is not the user's input
        return not isinstance(e, (DataError, ParamsError, CheckpointError))
    wrong_old = sum(old_rule(e) != helps for e, helps in errors.values())
    wrong_new = sum(is_transient(e) != helps for e, helps in errors.values())
    for name, (e, helps) in errors.items():
        print(f"[retry] {name:<40} can help: {helps!s:<5} before: {old_rule(e)!s:<5} now: {is_transient(e)}")
    return {"cases": len(errors), "wrong_before": wrong_old, "wrong_now": wrong_new}


def summary(results) -> dict:
    table: dict[str, Counter] = {}
    for case, verdict, _ in results:
        table.setdefault(case.cls, Counter())[verdict] += 1
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="d020617", help="commit to compare with, or 'none'")
    ap.add_argument("--only", default="", help="run only the cases whose name holds this text")
    args = ap.parse_args()
    versions = [Code("now", "ganaug.pipeline.plumbing.cli")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.baseline != "none":
            tree = tmp / "baseline-src"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), args.baseline], cwd=REPO, check=True)
            if "ganaug.pipeline" in (tree / "pyproject.toml").read_text():  # the namespace layout: a shim
                shim = tmp / "baseline-shim" / "ganaug"
                shim.mkdir(parents=True)
                for part in ("pipeline", "gan", "flows"):
                    (shim / part).symlink_to(tree / part)
                cli = "ganaug.pipeline.plumbing.cli" if (tree / "pipeline/plumbing/cli.py").is_file() else "ganaug.pipeline.cli"
                versions.insert(0, Code(args.baseline, cli, {"PYTHONPATH": str(shim.parent)}))
            else:
                versions.insert(0, Code(f"{args.baseline}", "pipeline.cli", {"PYTHONPATH": str(tree)}))
        try:
            tables = {code.label: summary(run_all(code, tmp, args.only)) for code in versions}
        finally:
            if args.baseline != "none":
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
    kinds = ["clear error", "quarantined", "correct", "refused", "traceback", "silent wrong", "data lost", "hang"]
    print("\nper class: " + " / ".join(kinds))
    for label, table in tables.items():
        total = Counter()
        for cls in sorted(table):
            total += table[cls]
            print(f"  {label:<8} {cls:<13} tried {sum(table[cls].values()):>2}: "
                  + " / ".join(str(table[cls][k]) for k in kinds))
        print(f"  {label:<8} {'all':<13} tried {sum(total.values()):>2}: " + " / ".join(str(total[k]) for k in kinds))
    r = retries_table()
    print(f"  retries (class 7): {r['cases']} real errors; wrongly retried or not: before {r['wrong_before']}, "
          f"now {r['wrong_now']}")
    if len(tables) == 2:
        bad = {label: sum(t[c][k] for c in t for k in ("traceback", "silent wrong", "data lost", "hang"))
               for label, t in tables.items()}
        print("  tracebacks + silent wrong + data lost: " + ", ".join(f"{k} {v}" for k, v in bad.items()))


if __name__ == "__main__":
    main()
