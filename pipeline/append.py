"""append: the augmented training set = every real image the user gave for training + the
synthetic images evaluate let through + manifest.

Acts on evaluate's gate (reports/gate.json): when the synthetic arm did not beat the best
other arm, no synthetic image is added (the set holds the real images; the result says why).
When it did, the accepted images are capped at the share of each class that won on val.

Real images: ganaug's own val/test carve-outs go back in (they were held out only for
calibration and measurement); images the user's own table marked val or test stay out.
Each row keeps the split it had in ganaug.

When the user's stage trains plainly on the folder (evaluate.user_training=plain), each class is
brought to the plan's counts, and what lands is the best folder evaluate could show (append.fill=best):
- the gate passed: synthetic images first, duplicates of the class's real images (random
  over-sampling) for what they did not bring: evaluate's synthetic arm is this very folder;
- the gate closed: the baseline that scored best, the over-sampled folder (duplicates) or SMOTE's
  (interpolations of pairs of a class's real images, source "smote"), or the real images alone.
append.fill=duplicates always fills with duplicates; none never fills.

Layout (ImageFolder-compatible, so any classifier's loader reads it as is):
    augmented/<class>/<sample_id>.png        real (written from ingest's pixel array)
    augmented/<class>/syn-<sample_id>.png    synthetic (copied)
    augmented/<class>/dup<k>-<sample_id>.png the k-th duplicate of a real image (hard-linked to it)
    augmented/<class>/smote-<sample_id>.png  a SMOTE interpolation of two real images
    augmented/manifest.parquet               which is which, with seeds and D scores
Built aside and renamed into place: an interrupted run leaves the previous set as it was.
Idempotent: when the set already holds exactly these images, nothing is touched.

With append.target set, the synthetic images go in place into that DVC-tracked folder as a
new version instead (pipeline/store/versioned.py): the Prefect way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .judges.arms import BASELINES, fills_with_duplicates, oversample_rows
from .plumbing.errors import DataError
from .judges.gate import GATE_FILE, gated_synthetic
from .store.files import atomic_dir, link_or_copy
from .store.manifest import (MANIFEST, augmented_counts, content_hash, label_map_of, make_manifest,
                             needed_per_class, read_manifest, users_training_images, write_manifest)
from .store.images import save_png, to_uint8
from .plumbing.params import Params
from .store.pixels import open_pixels, read_prepared
from .plumbing.progress import progress
from .store.versioned import append_in_place


def append(params: Params) -> dict:
    if params.append.target:
        return append_in_place(params)
    prepared_dir, accepted_dir = Path(params.paths.prepared), Path(params.paths.accepted)
    prepared = read_prepared(params)  # its pixel array's shape checked against the params, as train does
    accepted, gate = gated_synthetic(params, prepared)

    real = users_training_images(prepared)
    landed, why = landed_arm(params, gate)
    duplicates = filling_duplicates(params, real, accepted) if landed in ("synthetic", "oversampled") \
        else _no_fill()
    smoted, smote_pixels = filling_smote(params, prepared, real) if landed == "smote" else (_no_fill(), None)
    real_out, synthetic_out = _relocate(real, ""), _relocate(accepted, "syn-")
    target = make_manifest(pd.concat([real_out, synthetic_out, duplicates, smoted], ignore_index=True))

    dest = Path(params.paths.augmented)
    summary = {
        "real": len(real),
        "real_by_ganaug_split": {str(k): int(v) for k, v in real["split"].value_counts().sort_index().items()},
        "synthetic": int((target["source"] == "synthetic").sum()),
        "duplicates": len(duplicates),
        "smote": len(smoted),
        "landed": landed, "landed_because": why,
        "gate": gate,
        "per_class": {str(k): {s: int(n) for s, n in g["source"].value_counts().items()}
                      for k, g in target.groupby("label")},
    }
    if _already_holds(dest, target):
        return {**summary, "changed": False}
    with atomic_dir(dest) as tmp:
        # Real images: their PNGs made from ingest's pixel array (prepared keeps no file per image).
        pixels = open_pixels(prepared_dir, len(prepared), "ingest")
        for row, rel in zip(progress(real.index, desc="append: real images", unit="img", leave=False),
                            real_out["path"]):
            save_png(np.asarray(pixels[row]), tmp / rel)
        del pixels
        for src, rel in zip(accepted["path"], synthetic_out["path"]):  # verified files only
            link_or_copy(accepted_dir / src, tmp / rel, "copy", root=accepted_dir)
        for src, rel in zip(duplicates["_from"], duplicates["path"]):  # a duplicate: the real image's file
            link_or_copy(tmp / real_out.loc[src, "path"], tmp / rel, params.append.link, root=tmp)
        for start in range(0, len(smoted), 256):  # SMOTE's images, made a batch at a time
            batch = to_uint8(smote_pixels[start:start + 256])
            for arr, rel in zip(batch, smoted["path"].iloc[start:start + 256]):
                save_png(arr, tmp / rel)
        write_manifest(target, tmp)
    return {**summary, "changed": True}


def landed_arm(params: Params, gate: dict) -> tuple[str, str]:
    """Which arm's folder lands, and why: the synthetic one when the gate passed; otherwise the
    baseline evaluate chose (gate.json's fallback_arm, append.fill=best), over-sampling
    (fill=duplicates) or the real images alone (fill=none, or a training that is not plain: its
    own stage balances)."""
    if gate["passed"]:
        return "synthetic", "the gate passed: " + gate["reason"]
    if not fills_with_duplicates(params):
        return "real", "no fill (append.fill=none, or evaluate.user_training=balanced)"
    if params.append.fill == "duplicates":
        return "oversampled", "the gate closed; append.fill=duplicates"
    best = gate.get("fallback_arm")
    if best not in BASELINES:
        raise DataError(f"{Path(params.paths.reports) / GATE_FILE}: fallback_arm {best!r} is not one of "
                        f"{list(BASELINES)}; re-run `ganaug evaluate`")
    why = "scored best of the other arms" if best == gate.get("best_other_arm") else \
        f"scored best of the folders that reach the plan's counts ({gate.get('best_other_arm')} was not surely better)"
    return best, f"the gate closed and {best} {why} ({gate['metric']})"


def _no_fill() -> pd.DataFrame:
    return make_manifest([]).assign(_from=pd.Series([], dtype="int64"))


def filling_smote(params: Params, prepared: pd.DataFrame, real: pd.DataFrame) -> tuple[pd.DataFrame, object]:
    """Manifest rows of the SMOTE images that bring every class to the plan's counts (evaluate's
    SMOTE arm, drawn over every real image the user gave, seeded by append.seed), and the images
    themselves (smote.SmoteRows: made a slice at a time). An image's id comes from the two real images
    and the step that make it."""
    from .store.pixels import Images
    from .judges.smote import Smote

    need = needed_per_class(augmented_counts(real), params.generate.sampling_strategy)
    names = list(label_map_of(prepared))
    y = torch.tensor([names.index(v) for v in real["label"]], dtype=torch.long)
    rows = np.flatnonzero(prepared.index.isin(real.index))
    x = Images(params.paths.prepared, len(prepared), rows, "ingest")
    counts = torch.bincount(y, minlength=len(names))
    new, labels = Smote(x, y, strategy={names.index(k): int(counts[names.index(k)]) + n
                                        for k, n in need.items()}).new_rows(params.append.seed)
    if new is None:
        return _no_fill(), None
    sids = real["sample_id"].to_numpy()
    ids = [content_hash(f"{sids[i]}|{sids[j]}|{step!r}".encode()) for i, j, step in zip(new.i, new.j, new.step)]
    label_of = [names[c] for c in labels.tolist()]
    rows = make_manifest(pd.DataFrame({"sample_id": ids, "label": label_of, "split": "train", "source": "smote",
                                       "path": [f"{lab}/smote-{sid}.png" for lab, sid in zip(label_of, ids)]}))
    return rows.assign(_from=-1), new


def filling_duplicates(params: Params, real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows (and `_from`, the row in `real` each copies) of the duplicates that bring
    every class to the plan's counts where synthetic images fall short (append.fill): random
    over-sampling of its real images, seeded by append.seed. None when the set is not filled."""
    if not fills_with_duplicates(params) or not len(real):
        return _no_fill()
    need = needed_per_class(augmented_counts(real), params.generate.sampling_strategy)
    have = synthetic["label"].value_counts()
    rest = {k: n - int(have.get(k, 0)) for k, n in need.items() if n > int(have.get(k, 0))}
    rows = real.iloc[oversample_rows(real["label"].to_numpy(), rest, params.append.seed)]
    copy = rows.groupby("sample_id", sort=False).cumcount()  # the k-th duplicate of an image
    return make_manifest(pd.DataFrame({
        "sample_id": [f"{sid}-dup{k}" for sid, k in zip(rows["sample_id"], copy)],
        "path": [f"{lab}/dup{k}-{sid}.png" for lab, sid, k in zip(rows["label"], rows["sample_id"], copy)],
        "label": rows["label"].to_numpy(), "split": "train", "source": "duplicate",
    })).assign(_from=rows.index.to_numpy())


def _relocate(rows: pd.DataFrame, prefix: str) -> pd.DataFrame:
    rows = rows.copy()
    rows["path"] = [f"{lab}/{prefix}{sid}.png" for lab, sid in zip(rows["label"], rows["sample_id"])]
    return rows


def _already_holds(dest: Path, target: pd.DataFrame) -> bool:
    if not (dest / MANIFEST).is_file():
        return False
    try:
        current = read_manifest(dest, check_files=True)
    except DataError:
        return False  # damaged or incomplete: rebuild
    key = ["sample_id", "path", "label", "source"]
    return current[key].sort_values("sample_id").reset_index(drop=True).equals(
        target[key].sort_values("sample_id").reset_index(drop=True))


def summarize(r: dict) -> str:
    if "batch" in r:  # in place: a new version of append.target
        if not r["gate"]["passed"]:
            return f"no new version of {r['target']}: gate closed ({r['gate']['reason']})"
        state = f"commit {r['commit'][:8]}, tag {r['tag']}" if r["changed"] else "already appended"
        recovered = f"; the version a killed append left half-made was {r['recovered']}" if r.get("recovered") else ""
        return f"batch {r['batch']}: {r['images']} synthetic images into {r['target']} ({state}){recovered}"
    state = "updated" if r["changed"] else "already up to date"
    gate = "" if r["gate"]["passed"] else f"; gate closed: {r['gate']['reason']}"
    filled = f" + {r['duplicates']} duplicates of real ones (append.fill)" if r.get("duplicates") else ""
    filled += f" + {r['smote']} SMOTE images" if r.get("smote") else ""
    landed = f"; landed: the {r['landed']} folder" if r.get("landed") else ""
    return f"{r['real']} real + {r['synthetic']} synthetic images{filled} ({state}){landed}{gate}"
