"""The manifest: a Parquet table, one row per image; the spine every stage reads and writes.

| sample_id | path | label | split | source | d_score | seed | checkpoint | split_given |
split_given: the split came from the user's own table (its val/test images are the user's,
never put into a training set), rather than drawn by ingest for ganaug's own use.
Paths are relative to the manifest's folder, so a folder with its manifest moves as a unit. A
folder kept as one pixel array (generate's candidates) names each image's PNG in `path` but
writes none unless asked (generate.png): row i is image i of its pixels.u8.
"""
from __future__ import annotations

import hashlib
import re
import io
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from ..plumbing.errors import DataError, ParamsError
from .files import atomic_file, check_unchanged
from ..plumbing.paths import safe_relative

MANIFEST = "manifest.parquet"
BATCHES_DIR = "ganaug-batches"  # synthetic batches appended in place; ingest never reads them as real
SPLITS = ("train", "val", "test")
SAMPLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# duplicate: append.fill's copy of a real image; smote: its SMOTE interpolation of two (when SMOTE won)
SOURCES = ("real", "synthetic", "duplicate", "smote")
MADE = SOURCES[1:]  # images ganaug made: never ingested as data
COLUMNS = {
    "sample_id": "string", "path": "string", "label": "string", "split": "string",
    "source": "string", "d_score": "float64", "seed": "Int64", "checkpoint": "string",
    "split_given": "boolean",
}


def make_manifest(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame with exactly the manifest's columns and dtypes (missing ones null)."""
    df = pd.DataFrame(rows)
    for col, dtype in COLUMNS.items():
        df[col] = (df[col] if col in df else pd.Series([None] * len(df), dtype="object")).astype(dtype)
    return df[list(COLUMNS)].reset_index(drop=True)


def validate(df: pd.DataFrame, where: str, root: Path | None = None) -> pd.DataFrame:
    """Raise DataError naming `where` and the first problem; with root, check files exist."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing columns {missing}")
    problems = []
    dup = df["sample_id"][df["sample_id"].duplicated()]
    if len(dup):
        problems.append(f"duplicate sample_id {dup.iloc[0]!r}")
    for col, allowed in (("split", SPLITS), ("source", SOURCES)):
        bad = df[~df[col].isin(allowed)]
        if len(bad):
            problems.append(f"{col} must be one of {allowed}, found {bad[col].iloc[0]!r}")
    synth = df["source"] == "synthetic"
    if ((df["source"] != "real") & (df["split"] != "train")).any():
        problems.append("synthetic or duplicate rows outside the train split")
    if df.loc[synth, ["seed", "checkpoint"]].isna().any(axis=None):
        problems.append("synthetic rows without seed/checkpoint provenance")
    for name in df["label"].dropna().unique():
        try:
            check_class_name(name)
        except DataError as e:
            problems.append(str(e))
    if df[["sample_id", "path", "label"]].isna().any(axis=None):
        problems.append("null sample_id, path or label")
    else:  # ids become file names and paths are joined to the folder: neither may leave it
        bad_id = [i for i in df["sample_id"] if not SAMPLE_ID.fullmatch(i)]
        if bad_id:
            problems.append(f"sample_id {bad_id[0]!r} is not a plain name (letters, digits, '_', '-')")
        for rel in df["path"]:
            try:
                safe_relative(rel, "path")
            except DataError as e:
                problems.append(str(e))
                break
    if root is not None and not problems:
        absent = [p for p in df["path"] if not (root / p).is_file()]
        if absent and not (len(absent) == len(df) and _array_holds(root, len(df))):
            problems.append(f"{len(absent)} image files missing, e.g. {root / absent[0]}")
    if problems:
        raise DataError(f"{where}: invalid manifest: " + "; ".join(problems))
    return df


def _array_holds(root: Path, rows: int) -> bool:
    """A folder kept as one pixel array (generate's candidates: no file per image) holds its
    images when its array counts one per row (pipeline/store/pixels.py reads and checks it)."""
    from .files import own_record

    shape = root / "pixels.json"
    if not (shape.exists() or shape.is_symlink()):
        return False
    try:
        record = own_record(shape)
    except (OSError, ValueError) as e:
        raise DataError(f"{shape}: {e}; re-run the stage that writes {root}") from None
    return record.get("count") == rows and (root / "pixels.u8").is_file()


def read_manifest(folder: str | Path, check_files: bool = False) -> pd.DataFrame:
    path = Path(folder) / MANIFEST
    if not path.is_file():  # a FIFO or a device is not a manifest either: never opened
        raise DataError(f"{path}: no manifest here; run the stage that writes {folder} first")
    check_unchanged(folder, MANIFEST, f"the stage that writes {folder}")
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many kinds; all mean "not a readable manifest"
        raise DataError(f"{path}: not a readable manifest ({type(e).__name__}: {str(e)[:200]}); "
                        f"re-run the stage that writes {folder}") from None
    try:
        df = make_manifest(table)
    except (TypeError, ValueError, OverflowError) as e:  # a column of the wrong type
        raise DataError(f"{path}: not a ganaug manifest (a column holds values of the wrong type: "
                        f"{str(e)[:200]}); re-run the stage that writes {folder}") from None
    return validate(df, str(path), Path(folder) if check_files else None)


def write_manifest(df: pd.DataFrame, folder: str | Path) -> Path:
    """Validate, then write atomically. Stages write their manifest last."""
    path = Path(folder) / MANIFEST
    df = validate(make_manifest(df), str(path))
    buffer = io.BytesIO()  # pyarrow's file errors carry no errno; Python's say "disk full"
    df.to_parquet(buffer, index=False)
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(buffer.getbuffer())
    return path


def check_class_name(name: str, where: str = "") -> str:
    """Class names become folder names: refuse anything that could escape or confuse a path."""
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{prefix}empty class name")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("/"):
        raise DataError(f"{prefix}class name {name!r} contains a path separator or '..'")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise DataError(f"{prefix}class name {name!r} contains control characters")
    if name.startswith("."):
        raise DataError(f"{prefix}class name {name!r} starts with '.' (hidden folder)")
    if name == BATCHES_DIR:
        raise DataError(f"{prefix}class name {name!r} is reserved: ganaug keeps its appended batches under it")
    return name


WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))}


def not_portable(name: str) -> str | None:
    """Why a class name, fine here, cannot be a folder on Windows (where a colleague's `dvc pull`
    of the augmented set would fail), or None."""
    if name.split(".")[0].upper() in WINDOWS_RESERVED:
        return "a device name Windows reserves"
    if name.endswith((".", " ")):
        return "ends with a dot or space, which Windows drops"
    if set(name) & set('<>:"|?*'):
        return "holds one of <>:\"|?*, which Windows refuses in names"
    return None


def png_path(label: str, sample_id: str) -> str:
    """Where an image lives as a PNG in ganaug's own folders (prepared, accepted), relative to the
    folder: images/<class>/<sample id>.png. (The augmented set is an ImageFolder: append names its
    files <class>/<...>.png.)"""
    return f"images/{label}/{sample_id}.png"


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def synthetic_id(checkpoint: str, label: str, seed: int, truncation: float | None = None) -> str:
    """An image's name from what makes it (a truncated latent is another image)."""
    key = f"{checkpoint}|{label}|{seed}" + (f"|t{truncation!r}" if truncation is not None else "")
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def real_train_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The real images of ganaug's train split: what the GAN and evaluate's classifiers fit."""
    return df[(df["split"] == "train") & (df["source"] == "real")]


def class_counts(df: pd.DataFrame) -> dict[str, int]:
    """Real images per class in ganaug's train split (what the GAN and the classifiers fit)."""
    return {k: int(v) for k, v in real_train_rows(df)["label"].value_counts().sort_index().items()}


def users_training_images(df: pd.DataFrame) -> pd.DataFrame:
    """Every real image the user gave for training, which the augmented set holds: ganaug's own
    val/test carve-outs included, the user's own val/test (a split column in their table) excluded."""
    real = df[df["source"] == "real"]
    given = real["split_given"].fillna(False).astype(bool)
    return real[~given | (real["split"] == "train")]


def augmented_counts(df: pd.DataFrame) -> dict[str, int]:
    """Real images per class in the augmented set: what the plan's final counts start from."""
    real = users_training_images(df)
    return {k: int(v) for k, v in real["label"].value_counts().sort_index().items()}


def label_map_of(df: pd.DataFrame) -> dict[str, int]:
    """Class name -> index, sorted by name: fixed at ingest, carried in every checkpoint."""
    return {name: i for i, name in enumerate(sorted(df["label"].unique()))}


def needed_per_class(counts: dict[str, int], strategy) -> dict[str, int]:
    """Images to add per class to reach `strategy`'s counts (imbalanced-learn's over-sampling
    semantics) from `counts` (the plan: `augmented_counts`)."""
    from imblearn.utils import check_sampling_strategy

    y = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    try:
        need = check_sampling_strategy(strategy, y, "over-sampling")
    except ValueError as e:
        raise ParamsError(f"generate.sampling_strategy={strategy!r}: {e}") from None
    return {str(k): int(v) for k, v in need.items() if v > 0}
