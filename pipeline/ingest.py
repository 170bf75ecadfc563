"""ingest: the user's images -> validated, converted images + manifest with a stratified split.

Input (paths.raw) is one of:
- an ImageFolder tree, `raw/<class>/**/*.png|jpg|...`, or one per split, `raw/train/<class>/...`
  beside `raw/test/<class>/...` (and/or `raw/val/...`): the user's test and val images are kept
  as given, and ganaug draws from train only what a class was not given;
- a CSV or Parquet table with columns `path,label` (paths relative to the table's folder, and
  inside it), and optionally `split` (train/val/test) to fix the split, e.g. a balanced test set;
  an empty cell leaves that row to ganaug (a table may give only a test set). A split column of
  train alone gives no split: ganaug draws it all;
- a folder holding a ganaug `manifest.parquet` (e.g. an augmented set): its real rows.
Rows whose `source` is `synthetic` are skipped: a GAN never trains on its own output.
Every file is decoded (in ingest.workers processes); bad files are quarantined with the reason
(or fail the stage). Output: manifest.parquet and the pixels as one memory-mappable array
(pixels.u8, pipeline/store/pixels.py) that every later stage reads, row i of it the manifest's row i.
No file per image: a manifest path is the name the image's PNG gets in the augmented set, which
append writes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import stat
import sys
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .plumbing.errors import DataError
from .store.files import atomic_dir, write_json
from .store.images import BadImage, convert, decode, resizer
from .store.manifest import (BATCHES_DIR, MADE, MANIFEST, SPLITS, check_class_name, content_hash, make_manifest,
                             png_path, not_portable, write_manifest)
from .plumbing.params import Params
from .plumbing.paths import inside
from .store.pixels import PIXELS, SHAPE, PixelWriter
from .plumbing.progress import progress

TABLE_SUFFIXES = {".csv", ".parquet"}
GIVEN_RANK = {"test": 3, "val": 2, "train": 1, None: 0}  # which of identical copies ingest keeps


@dataclass
class Source:
    path: Path      # absolute or relative to cwd
    label: str
    shown: str      # how the report names it (relative to paths.raw)
    split: str | None = None  # fixed by the user (table or split folders), else drawn at ingest


def ingest(params: Params) -> dict:
    cfg, raw = params.ingest, Path(params.paths.raw)
    sources, skipped_synthetic, ignored = list_sources(raw)
    sources, renamed = _normalized_labels(sources)
    quarantine: list[dict] = []

    def bad(src: Source, reason: str):
        if cfg.on_bad_file == "fail":
            raise DataError(f"{src.path}: {reason} (set ingest.on_bad_file=quarantine to skip such files)")
        quarantine.append({"path": src.shown, "label": src.label, "reason": reason})

    workers = cfg.workers or os.cpu_count() or 1
    unique, duplicates = _unique(sources, cfg, workers, bad)

    # Decode, convert, write the manifest and the pixel array; then the split.
    prepared = Path(params.paths.prepared)
    # What shaped the pixels, beside the files: part of the folder's identity (provenance).
    shaped_by = {k: getattr(cfg, k) for k in ("size", "channels", "resize", "background")}
    with atomic_dir(prepared, made_by={"stage": "ingest", "settings": shaped_by}) as tmp:
        rows, notes = _decode(unique, cfg, workers, tmp, bad)
        df = make_manifest([{k: v for k, v in r.items() if k != "_shown"} for r in rows])
        check_class_sizes(df, params, [s.label for s in sources])
        # The user's table may fix some rows' split (a test set of their own); the rest are drawn.
        df["split"], why = stratified_split(df, params)
        check_given_split(df)
        write_manifest(df, tmp)

    not_portable_labels = {k: not_portable(k) for k in sorted(df["label"].unique()) if not_portable(k)}
    per_class = (df.groupby(["label", "split"]).size().unstack(fill_value=0)
                 .reindex(columns=["train", "val", "test"], fill_value=0))
    report = {
        "source": str(raw),
        "files_seen": len(sources),
        "images": len(df),
        "classes": {label: {**{k: int(v) for k, v in r.items()}, "why": why[str(label)]}
                    for label, r in per_class.iterrows()},
        "quarantined": quarantine,
        "duplicates": duplicates,
        "skipped_synthetic": skipped_synthetic,
        "ignored": ignored,
        # What ganaug changed or could not keep, for the user to check (the summary says so).
        "warnings": {k: v for k, v in {
            "labels_normalized": renamed,      # Unicode NFC, outer whitespace: one class, not two
            "colour_dropped": notes.get("colour_dropped", {}),  # images per class (ingest.channels=1)
            "multi_frame": notes.get("multi_frame", {}),        # the first frame was used
            "labels_not_portable": not_portable_labels,  # a colleague on Windows could not check them out
        }.items() if v},
    }
    write_json(Path(params.paths.reports) / "ingest.json", report)
    return report


def _unique(sources: list[Source], cfg, workers: int, bad) -> tuple[dict[str, Source], list[dict]]:
    """Pass 1: hash the bytes (in worker processes), drop exact duplicates (the sample_id is the
    content hash). Results come in input order: the first of two copies is kept, unless a later
    one has a split the user gave (test before val before train before none). One image under
    two labels: which is right cannot be known, so neither copy is used."""
    with _pool(workers, len(sources)) as pool:
        hashed = list(progress(pool.map(hash_one, [(str(src.path), cfg.max_file_mb) for src in sources],
                                        chunksize=_chunksize(len(sources), workers)),
                               total=len(sources), desc="ingest: hash", unit="file", leave=False))
    unique: dict[str, Source] = {}
    duplicates = []
    conflicting: dict[str, list[Source]] = {}
    for src, (digest, problem) in zip(sources, hashed):
        if problem:
            bad(src, problem)
            continue
        if digest in unique:
            first = unique[digest]
            if first.label != src.label:
                conflicting.setdefault(digest, [first]).append(src)
            elif GIVEN_RANK[src.split] > GIVEN_RANK[first.split]:
                # The user's test (val) image wins over an identical copy ganaug would draw: it
                # must not land in training, nor the class lose a test image it was given.
                unique[digest] = src
                first, src = src, first  # the copy dropped is the one reported below
            duplicates.append({"path": src.shown, "duplicate_of": first.shown, "label": src.label,
                               "conflict": first.label != src.label})
            continue
        unique[digest] = src
    for digest, copies in conflicting.items():
        names = sorted({c.label for c in copies})
        for c in copies:
            bad(c, f"the same image is listed under labels {names} (see duplicates); fix its label")
        del unique[digest]
    return unique, duplicates


def _decode(unique: dict[str, Source], cfg, workers: int, tmp: Path, bad) -> tuple[list[dict], dict]:
    """Pass 2: decode, convert, write the pixel array into tmp: in worker processes, results in
    input order, so the manifest's rows, the pixel array and the quarantine report do not depend
    on them. The pool closes (its workers stop writing) before a failure removes tmp.
    (manifest rows, notes: note -> class -> images)."""
    jobs = [(str(src.path), cfg.channels, cfg.max_pixels, cfg.background, cfg.size, cfg.resize)
            for src in unique.values()]
    rows = []
    notes: dict[str, dict[str, int]] = {}
    by_pixels: dict[str, list[Source]] = {}  # converted pixels' hash -> every image that has them
    pixels = PixelWriter(tmp)
    with _pool(workers, len(jobs)) as pool:
        results = pool.map(prepare_one, jobs, chunksize=_chunksize(len(jobs), workers))
        for (sid, src), (problem, arr, said) in progress(zip(unique.items(), results), total=len(jobs),
                                                         desc="ingest: decode", unit="img"):
            for note in said:
                notes.setdefault(note, {}).setdefault(src.label, 0)
                notes[note][src.label] += 1
            if arr is not None:
                by_pixels.setdefault(hashlib.sha256(arr.tobytes()).hexdigest(), []).append(src)
                # path: the image's name as a PNG, which append writes into the augmented set
                rows.append({"sample_id": sid, "path": png_path(src.label, sid), "label": src.label,
                             "source": "real",
                             "split": src.split, "split_given": src.split is not None, "_shown": src.shown})
                pixels.append(arr)
            else:
                bad(src, problem)
    pixels.close()
    # Different files, the same pixels once converted, under two labels (e.g. classes told
    # apart by colour alone, under ingest.channels=1): no classifier can tell them apart.
    same_pixels = {k: copies for k, copies in by_pixels.items() if len({c.label for c in copies}) > 1}
    if same_pixels:
        rows = _drop_identical_across_labels(rows, tmp, same_pixels, bad, cfg.channels)
    return rows, notes


def _drop_identical_across_labels(rows: list[dict], tmp: Path, same: dict[str, list[Source]], bad,
                                  channels: int) -> list[dict]:
    """Quarantine every image whose converted pixels another label's image has too, and
    rewrite the pixel array without them (a rare path: the array is rebuilt once)."""
    dropped = set()
    for copies in same.values():
        labels = sorted({c.label for c in copies})
        hint = " (ingest.channels=1 keeps brightness only: set ingest.channels=3 if colour tells them apart)" \
            if channels == 1 else ""
        for c in copies:
            bad(c, f"identical, once converted, to an image labelled otherwise (labels {labels}){hint}")
            dropped.add(c.shown)
    keep = [i for i, r in enumerate(rows) if r["_shown"] not in dropped]
    (tmp / PIXELS).rename(tmp / (PIXELS + ".old"))
    old = np.memmap(tmp / (PIXELS + ".old"), dtype=np.uint8, mode="r")
    shape = tuple(json.loads((tmp / SHAPE).read_text())["shape"])
    old = old.reshape(len(rows), *shape)
    writer = PixelWriter(tmp, shape)
    for i in keep:
        writer.append(np.asarray(old[i]))
    writer.close()
    del old
    (tmp / (PIXELS + ".old")).unlink()
    return [rows[i] for i in keep]


def hash_one(job) -> tuple[str | None, str | None]:
    """(content hash, None), or (None, why the file cannot be used): in a worker."""
    path, max_file_mb = job
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block for ever, a device never end
            return None, "not a regular file (a pipe, device or socket)"
        size = st.st_size
        if size > max_file_mb * 2**20:
            return None, f"oversized: {size / 2**20:.1f} MB > ingest.max_file_mb={max_file_mb}"
        return content_hash(Path(path).read_bytes()), None
    except OSError as e:
        return None, f"unreadable: {e.strerror or e}"


def _flags(column: pd.Series, where: str) -> np.ndarray:
    """A true/false column as a table stores it (bool, 0/1, or text: a CSV's "False" is text, and
    bool("False") is True); empty is false; anything else is an error naming the column."""
    words = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False, "0.0": False,
             "no": False, "": False, "nan": False, "none": False, "<na>": False}
    out = []
    for v in column.tolist():
        key = str(v).strip().lower() if v is not None and not (isinstance(v, float) and np.isnan(v)) else ""
        if key not in words:
            raise DataError(f"{where}: {v!r} is not true or false")
        out.append(words[key])
    return np.asarray(out, dtype=bool)


def _chunksize(n_jobs: int, workers: int) -> int:
    return max(1, min(64, n_jobs // (8 * workers)))


def prepare_one(job) -> tuple[str | None, np.ndarray | None, list[str]]:
    """Decode and convert one image (in a worker): (None, pixels, notes), or (why it cannot be
    used, None, notes). The parent writes the pixels: no file per image."""
    path, channels, max_pixels, background, size, resize = job
    notes: list[str] = []
    try:
        data = Path(path).read_bytes()
        arr = convert(decode(data, channels, max_pixels, background, shrink_to=size, notes=notes),
                      resizer(size, resize))
    except BadImage as e:
        return str(e), None, notes
    except OSError as e:
        return f"unreadable: {e.strerror or e}", None, notes
    return None, arr, notes


class _InProcess:
    """The pool's interface, run here: one worker, or too few images to pay for processes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


def _pool(workers: int, n_jobs: int):
    if workers == 1 or n_jobs < 2 * workers:
        return _InProcess()
    # fork where there is one: workers start in milliseconds, without re-importing torch.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_end_with_parent, initargs=(os.getpid(),))


def _end_with_parent(parent: int) -> None:
    """A pool worker ends when the stage's process does, even one killed with SIGKILL (which
    runs no cleanup): on Linux the kernel sends it SIGKILL too, instead of leaving it behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def list_sources(raw: Path) -> tuple[list[Source], int, list[str]]:
    """(images to ingest, number of synthetic rows skipped, files ignored and why)."""
    if not raw.exists():
        raise DataError(f"{raw}: input not found (set paths.raw to an image folder or a path,label table)")
    if raw.is_file():
        if raw.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{raw}: expected a folder, a .csv or a .parquet table")
        return _from_table(raw)
    if (raw / MANIFEST).is_file():
        return _from_table(raw / MANIFEST)
    return _from_image_folder(raw)


def _from_table(table: Path) -> tuple[list[Source], int, list[str]]:
    try:
        df = pd.read_csv(table, dtype=str) if table.suffix.lower() == ".csv" else pd.read_parquet(table)
    except Exception as e:  # pandas/pyarrow raise many kinds; all mean "cannot read this table"
        raise DataError(f"{table}: cannot read table: {e}") from None
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise DataError(f"{table}: missing column(s) {sorted(missing)}; expected at least path,label")
    n_synth = 0
    if "source" in df.columns:  # a ganaug manifest: its synthetic images and fills are not data
        synth = df["source"].astype(str) == "synthetic"
        n_synth, df = int(synth.sum()), df[~df["source"].astype(str).isin(MADE)]
    # An empty split cell: ganaug draws that row's split (a table may give only a test set).
    splits = [None if _blank(s) else s for s in df["split"]] if "split" in df.columns else [None] * len(df)
    if "split" in df.columns and "split_given" in df.columns:
        # A ganaug manifest (an augmented set handed back as input): only the user's own split
        # is a given split; ganaug's val/test carve-outs were its own, and taking them as the
        # user's would shrink the training set on every round.
        given = _flags(df["split_given"], f"{table} column split_given")
        splits = [s if g else None for s, g in zip(splits, given)]
    labels = label_names(df["label"], table)
    sources = []
    for i, (path, label, split) in enumerate(zip(df["path"], labels, splits)):
        where = f"{table} row {i + 2 if table.suffix == '.csv' else i}"
        if pd.isna(path) or label is None:
            raise DataError(f"{where}: empty path or label")
        check_class_name(label, where)
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: split must be one of {SPLITS} or empty (ganaug draws it), found {split!r}")
        # Relative to the table's folder, and inside it: a table is untrusted input.
        sources.append(Source(inside(table.parent, str(path), where), label, str(path), split))
    if not sources:
        raise DataError(f"{table}: no real images listed")
    if not any(src.split in ("val", "test") for src in sources):
        # A split of train alone is no split (an augmented set handed back: the user's own val
        # and test rows stayed out of it): ganaug draws it all, as for an ImageFolder.
        sources = [dataclasses.replace(src, split=None) for src in sources]
    return sources, n_synth, []


def _blank(cell) -> bool:
    if isinstance(cell, str):
        return not cell.strip()
    return cell is None or cell is pd.NA or (isinstance(cell, float) and np.isnan(cell))


def label_names(column: pd.Series, table: Path) -> list[str | None]:
    """Class names from a table's label column. Parquet keeps types: integral floats (0.0,
    what pandas makes of an int column with a gap) are the integers' names; other floats,
    bools and nested values are not class names."""
    if pd.api.types.is_bool_dtype(column):
        raise DataError(f"{table}: label column holds booleans; expected class names or integer codes")
    if pd.api.types.is_float_dtype(column):
        values = column.dropna()
        fractional = values[values != values.round()]
        if len(fractional):
            raise DataError(f"{table}: label column holds non-integral numbers such as {float(fractional.iloc[0])}; "
                            "expected class names or integer codes")
        return [None if pd.isna(v) else str(int(v)) for v in column]
    names = []
    for v in column:
        if v is None or (not isinstance(v, (list, dict, np.ndarray)) and pd.isna(v)):
            names.append(None)
        elif isinstance(v, (str, int, np.integer)) and not isinstance(v, bool):
            names.append(str(v))
        else:
            raise DataError(f"{table}: label {v!r} ({type(v).__name__}) is not a class name")
    return names


def _from_image_folder(root: Path) -> tuple[list[Source], int, list[str]]:
    class_dirs, n_synth, stray = _subfolders(root)
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    ignored = [f"{name}: not inside a class folder" for name in stray]
    sources = []
    if _split_layout(root, class_dirs):  # raw/train/<class>/..., raw/test/<class>/...
        for split_dir in class_dirs:
            split = None if split_dir.name == "train" else split_dir.name  # train's val ganaug still draws
            classes, synth, stray = _subfolders(split_dir)
            n_synth += synth
            ignored += [f"{split_dir.name}/{name}: not inside a class folder" for name in stray]
            for d in classes:
                sources += _class_folder(d, f"{split_dir.name}/{d.name}", split)
        return sources, n_synth, ignored
    for d in class_dirs:
        sources += _class_folder(d, d.name)
    return sources, n_synth, ignored


def _subfolders(folder: Path) -> tuple[list[Path], int, list[str]]:
    """(the folders in folder, hidden ones and ganaug's batches left out; the PNGs in ganaug's
    batches there, which are synthetic and never ingested as real; the files beside them)."""
    batches = folder / BATCHES_DIR  # in place, append writes its batches into the training set
    n_synth = sum(1 for _ in batches.rglob("*.png")) if batches.is_dir() else 0
    entries = sorted(e for e in folder.iterdir() if not e.name.startswith("."))
    return ([e for e in entries if e.is_dir() and e.name != BATCHES_DIR], n_synth,
            [e.name for e in entries if e.is_file()])


def _split_layout(root: Path, top: list[Path]) -> bool:
    """raw/ holds the user's split, torchvision-style: folders named train and val and/or test,
    each holding class folders. Then val and test images are the user's, and ganaug carves from
    train only what a class was not given (see stratified_split). Classes that happen to be
    named train and test, their images directly inside, stay classes; a split layout with a
    folder of another name (valid, extra) is an error, not classes named train and valid."""
    names = {d.name for d in top}
    if "train" not in names or not names & {"val", "test"}:
        return False
    if not any(_subfolders(d)[0] for d in top):  # classes named train and test, images inside
        return False
    others = sorted(names - set(SPLITS))
    if others:
        raise DataError(f"{root}: train/ beside {'/'.join(sorted(names & {'val', 'test'}))}/ reads as your split, but "
                        f"{others} is not a split folder (train, val, test): rename it (valid -> val) or move it out")
    return True


def _class_folder(folder: Path, shown: str, split: str | None = None) -> list[Source]:
    """Every file under a class folder, labelled with the folder's name."""
    check_class_name(folder.name, str(folder))
    files = _files_under(folder)
    if not files:
        raise DataError(f"{folder}: class folder is empty")
    return [Source(folder / rel, folder.name, os.path.join(shown, rel), split) for rel in files]


def _files_under(folder: Path) -> list[str]:
    """The files under folder (relative paths; hidden files and folders, and linked folders,
    left out), in pathlib's order (by parts). os.walk on strings: pathlib's rglob and sort
    were a third of ingest's own time at 100,000 images."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [n for n in dirs if not n.startswith(".")]
        rel_top = os.path.relpath(top, folder)
        found += [n if rel_top == "." else os.path.join(rel_top, n) for n in names
                  if not n.startswith(".") and os.path.isfile(os.path.join(top, n))]
    return sorted(found, key=lambda rel: rel.split(os.sep))


def check_class_sizes(df: pd.DataFrame, params: Params, all_labels: list[str]):
    cfg = params.ingest
    counts = df["label"].value_counts()
    empty = sorted(set(all_labels) - set(counts.index))
    if empty:
        raise DataError(f"class(es) {empty} have no usable image (see the quarantine in the ingest report)")
    small = {k: int(v) for k, v in counts.items() if v < cfg.min_per_class}
    if small:
        raise DataError(f"class(es) with too few images to split: {small}; ganaug needs "
                        f"ingest.min_per_class={cfg.min_per_class} images of a class (at least 2 to train the GAN "
                        "on and 1 to test with): add images or remove the class")


def check_given_split(df: pd.DataFrame):
    """A split the user fixed (in part) must still leave every class train and test images (a
    class without val images borrows the filter's calibration from the others)."""
    per = df.groupby(["label", "split"]).size().unstack(fill_value=0).reindex(columns=list(SPLITS), fill_value=0)
    lacking = {label: [s for s in ("train", "test") if row[s] == 0] for label, row in per.iterrows()
               if (row[["train", "test"]] == 0).any()}
    if lacking:
        raise DataError(f"the split you gave (a table's split column, or train/val/test folders) leaves class(es) "
                        f"without images in some split: {lacking}; every class needs train and test images")


def carve_outs(n: int, cfg) -> tuple[int, int, str]:
    """(test, val, why) for a class of n images (stratified_split takes them from the rows the
    user gave no split).

    A class of at least ingest.full_split_from images gives test_fraction and val_fraction of
    them. A smaller class of n gives n / full_split_from of those shares (so a class of 4 keeps
    3 for the GAN where flat fractions kept 2): at least one test image (the gate needs one),
    and at least 2 images stay for training. What a small class cannot give, val above all, the
    filter borrows, pooled, from the other classes."""
    shrink = min(1.0, n / cfg.full_split_from)
    n_test = max(0, min(max(1, round(n * cfg.test_fraction * shrink)), n - 2))
    n_val = max(0, min(round(n * cfg.val_fraction * shrink), n - n_test - 2))
    if shrink == 1.0:
        why = f"{n} images >= ingest.full_split_from={cfg.full_split_from}: the full fractions"
    else:
        why = (f"{n} images < ingest.full_split_from={cfg.full_split_from}: carve-outs shrink to {n}/"
               f"{cfg.full_split_from} of the fractions, so the GAN keeps {n - n_test - n_val}")
        if n_val == 0:
            why += "; no val image (the filter borrows its calibration, pooled, from the other classes)"
    return n_test, n_val, why


def stratified_split(df: pd.DataFrame, params: Params) -> tuple[list[str], dict[str, str]]:
    """(split per row, why per class). Rows whose split the user gave keep it; the rest of each
    class are shuffled (seeded, independent of file order) and carved into test, val and train by
    `carve_outs` (sized on the class's drawn and given-train rows), except that a class whose test
    (val) images the user gave gets no test (val) carve-out: the gate judges on the user's test
    images and the GAN keeps the rest."""
    cfg = params.ingest
    given = df["split_given"].astype(bool)
    split = df["split"].where(given, "train").astype("string")
    why = {}
    for label, group in df.groupby("label"):
        mine = group[~given[group.index]]  # the rows ganaug splits
        gave = group.loc[given[group.index], "split"].value_counts().to_dict()
        if mine.empty:
            why[str(label)] = "split given by the table"
            continue
        rng = np.random.default_rng([cfg.seed, int(content_hash(str(label).encode())[:8], 16)])
        order = rng.permutation(np.sort(mine["sample_id"].to_numpy()))
        # Sized on the images that could train (the user's test and val ones never could).
        n_test, n_val, why[str(label)] = carve_outs(len(order) + gave.get("train", 0), cfg)
        if gave:
            keep = max(0, 2 - gave.get("train", 0))  # of the drawn rows, to leave the GAN 2 images
            n_test = 0 if gave.get("test") else max(0, min(n_test, len(order) - keep))
            n_val = 0 if gave.get("val") else max(0, min(n_val, len(order) - n_test - keep))
            why[str(label)] = (f"{', '.join(f'{n} {s}' for s, n in sorted(gave.items()))} given by you; of the "
                               f"other {len(order)}: {n_test} test, {n_val} val, {len(order) - n_test - n_val} train")
        split[mine.index[mine["sample_id"].isin(order[:n_test])]] = "test"
        split[mine.index[mine["sample_id"].isin(order[n_test:n_test + n_val])]] = "val"
    return split.tolist(), why


def summarize(r: dict) -> str:
    said = {"labels_normalized": "class names normalized (Unicode NFC, outer spaces) {}",
            "colour_dropped": "colour images made grey (ingest.channels=1) per class {}",
            "multi_frame": "multi-frame files, first frame used, per class {}",
            "labels_not_portable": "class names that cannot be folders on Windows {}"}
    warnings = "".join(f"; WARNING: {said[k].format(v)}" for k, v in r.get("warnings", {}).items() if k in said)
    return (f"{r['images']} images in {len(r['classes'])} classes; "
            f"{len(r['quarantined'])} quarantined, {len(r['duplicates'])} duplicates, "
            f"{r['skipped_synthetic']} synthetic rows skipped{warnings}")


def _normalized_labels(sources: list[Source]) -> tuple[list[Source], dict[str, str]]:
    """Class names as a person reads them: `café` typed (NFC) and `café` from a Mac folder (NFD)
    are one class, as are `cat` and `cat `. Returns the sources and {given: used} for each name
    that changed."""
    renamed: dict[str, str] = {}
    out = []
    for src in sources:
        name = unicodedata.normalize("NFC", src.label).strip()
        if name != src.label:
            renamed[src.label] = check_class_name(name, str(src.shown))
            src = dataclasses.replace(src, label=name)
        out.append(src)
    return out, renamed
