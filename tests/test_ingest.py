import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ganaug.pipeline.plumbing.errors import DataError
from ganaug.pipeline.ingest import ingest
from ganaug.pipeline.store.manifest import read_manifest
from tests.conftest import make_shapes, prepared_pixels, tiny_params


def test_image_folder_becomes_a_validated_stratified_manifest(params):
    report = ingest(params)
    df = read_manifest(params.paths.prepared, check_files=True)
    assert report["images"] == len(df) == 68
    assert set(df["label"]) == {"circle", "square", "cross"}
    assert (df["source"] == "real").all()
    # Every class has train and test images; the common ones (30, under ingest.full_split_from=50)
    # lend val images too, the rare one (8) only one test image: the GAN keeps 7 of its 8.
    per = df.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (per[["train", "test"]] >= 1).all(axis=None)
    assert per.loc["cross"].sum() == 8
    # Converted to the configured size and channels.
    assert prepared_pixels(params.paths.prepared).shape == (len(df), 8, 8, 1)
    assert not list(Path(params.paths.prepared).rglob("*.png"))  # one array, no file per image
    saved = json.loads((Path(params.paths.reports) / "ingest.json").read_text())
    cross, circle = saved["classes"]["cross"], saved["classes"]["circle"]
    assert (cross["train"], cross["val"], cross["test"]) == (7, 0, 1)
    assert "borrows" in cross["why"] and "8 images < ingest.full_split_from=50" in cross["why"]
    assert (circle["train"], circle["val"], circle["test"]) == (23, 3, 4)  # 30*0.25*0.6 = 4.5 -> 4 (half to even)


def test_a_four_image_class_runs_with_defaults_and_keeps_three_for_training(tmp_path):
    """What a user's rare class looks like: 4 images in an ImageFolder, no split, no setting changed."""
    from ganaug.pipeline.plumbing.params import load_params

    make_shapes(tmp_path / "raw", {"circle": 200, "square": 40, "cross": 4})
    p = load_params(None, [f"paths.raw={tmp_path / 'raw'}", f"paths.prepared={tmp_path / 'prep'}",
                           f"paths.reports={tmp_path / 'reports'}"])
    ingest(p)
    per = read_manifest(p.paths.prepared).groupby(["label", "split"]).size().unstack(fill_value=0)
    assert per.loc["cross", "train"] >= 3 and per.loc["cross", "test"] == 1
    # Carve-outs shrink with the class: 40 images lend fewer (in share) than 200 do.
    share = 1 - per["train"] / per.sum(axis=1)
    assert share["cross"] <= share["square"] < share["circle"]
    assert per.loc["circle", "val"] == 30 and per.loc["circle", "test"] == 50  # full fractions at >= 50


def test_split_is_reproducible_and_independent_of_listing(params, tmp_path):
    ingest(params)
    first = read_manifest(params.paths.prepared).set_index("sample_id")["split"]
    # The same files under other names (another listing order) split the same way.
    for f in sorted(Path(params.paths.raw).rglob("*.png")):
        f.rename(f.with_name("z" + f.name[::-1]))
    ingest(params)
    second = read_manifest(params.paths.prepared).set_index("sample_id")["split"]
    pd.testing.assert_series_equal(first.sort_index(), second.sort_index())


def test_rgb_pad_and_jpeg(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 6, "square": 6}, rgb=True, ext="jpg")
    p = tiny_params(tmp_path, ingest={"channels": 3, "resize": "pad", "size": 16})
    ingest(p)
    df = read_manifest(p.paths.prepared)
    assert prepared_pixels(p.paths.prepared).shape == (len(df), 16, 16, 3)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_input_skips_synthetic_rows(tmp_path, suffix):
    make_shapes(tmp_path / "imgs", {"circle": 6, "square": 6})
    rows = [{"path": str(p.relative_to(tmp_path)), "label": p.parent.name, "source": "real"}
            for p in sorted((tmp_path / "imgs").rglob("*.png"))]
    rows[0]["source"] = "synthetic"  # a GAN output must never be ingested as real
    table = tmp_path / f"list{suffix}"
    df = pd.DataFrame(rows)
    df.to_csv(table, index=False) if suffix == ".csv" else df.to_parquet(table)
    p = tiny_params(tmp_path, paths={"raw": str(table)})
    report = ingest(p)
    assert report["skipped_synthetic"] == 1 and report["images"] == 11


def _bad_files(cls: Path):
    png = (cls / "circle-000.png").read_bytes()
    (cls / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (cls / "truncated.png").write_bytes(png[: len(png) // 2])
    (cls / "empty.png").write_bytes(b"")
    (cls / "notes.txt").write_text("not an image")
    Image.new("L", (300, 300)).save(cls / "huge.png")


def test_bad_files_are_quarantined_with_reasons(params):
    _bad_files(Path(params.paths.raw) / "circle")
    p = tiny_params(Path(params.paths.raw).parent, ingest={"max_pixels": 200 * 200})
    report = ingest(p)
    reasons = {q["path"]: q["reason"] for q in report["quarantined"]}
    assert set(reasons) == {f"circle/{n}" for n in
                            ("corrupt.png", "truncated.png", "empty.png", "notes.txt", "huge.png")}
    assert "zero-byte" in reasons["circle/empty.png"]
    assert "not an image" in reasons["circle/notes.txt"]
    assert "truncated" in reasons["circle/truncated.png"] or "corrupt" in reasons["circle/truncated.png"]
    assert "oversized" in reasons["circle/huge.png"]
    assert report["images"] == 68  # the good ones all made it


def test_bad_file_fails_the_stage_when_asked_and_keeps_previous_output(params):
    ingest(params)
    before = read_manifest(params.paths.prepared)
    _bad_files(Path(params.paths.raw) / "circle")
    p = tiny_params(Path(params.paths.raw).parent, ingest={"on_bad_file": "fail"})
    with pytest.raises(DataError, match=r"circle/(corrupt|empty|huge|notes|truncated)"):
        ingest(p)
    pd.testing.assert_frame_equal(read_manifest(params.paths.prepared), before)
    leftovers = [d.name for d in Path(params.paths.prepared).parent.iterdir() if ".tmp-" in d.name]
    assert leftovers == []


def test_oversized_file_by_bytes(params):
    (Path(params.paths.raw) / "square" / "big.png").write_bytes(b"\0" * (2 * 2**20))
    p = tiny_params(Path(params.paths.raw).parent, ingest={"max_file_mb": 1})
    reasons = {q["path"]: q["reason"] for q in ingest(p)["quarantined"]}
    assert "oversized: 2.0 MB" in reasons["square/big.png"]


def test_empty_class_folder_is_an_error(params):
    (Path(params.paths.raw) / "triangle").mkdir()
    with pytest.raises(DataError, match="triangle: class folder is empty"):
        ingest(params)
    assert not Path(params.paths.prepared).exists()


def test_class_too_small_to_split(params):
    for f in sorted((Path(params.paths.raw) / "cross").iterdir())[2:]:
        f.unlink()
    with pytest.raises(DataError, match=r"too few images to split: \{'cross': 2\}.*at least 2 to train the GAN "
                                         r"on and 1 to test with"):
        ingest(params)


def test_class_whose_images_are_all_bad(params):
    cls = Path(params.paths.raw) / "blank"
    cls.mkdir()
    (cls / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"\['blank'\] have no usable image"):
        ingest(params)


@pytest.mark.parametrize("label,problem", [("../escape", "path separator or '..'"), ("a/b", "path separator"),
                                           ("..", "path separator or '..'"), ("bad\x07name", "control")])
def test_unsafe_class_names_are_refused(tmp_path, label, problem):
    make_shapes(tmp_path / "imgs", {"circle": 6})
    table = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(p.relative_to(tmp_path)) for p in (tmp_path / "imgs").rglob("*.png")],
                  "label": label}).to_csv(table, index=False)
    with pytest.raises(DataError, match=f"list.csv row 2: class name .* {problem}"):
        ingest(tiny_params(tmp_path, paths={"raw": str(table)}))


def test_control_character_in_folder_name(params):
    (Path(params.paths.raw) / "cross").rename(Path(params.paths.raw) / "cr\tss")
    with pytest.raises(DataError, match="control characters"):
        ingest(params)


def test_duplicates_are_kept_once_and_reported(params):
    raw = Path(params.paths.raw)
    (raw / "circle" / "copy.png").write_bytes((raw / "circle" / "circle-001.png").read_bytes())
    (raw / "square" / "mislabelled.png").write_bytes((raw / "circle" / "circle-002.png").read_bytes())
    report = ingest(params)
    assert report["images"] == 67  # the exact copy once; the image under two labels not at all
    dups = {d["path"]: d for d in report["duplicates"]}
    assert dups["circle/copy.png"]["conflict"] is False
    assert dups["square/mislabelled.png"]["conflict"] is True
    assert {q["path"] for q in report["quarantined"]} == {"circle/circle-002.png", "square/mislabelled.png"}


def test_missing_input_and_wrong_table(tmp_path):
    with pytest.raises(DataError, match="input not found"):
        ingest(tiny_params(tmp_path))
    (tmp_path / "t.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['label', 'path'\]"):
        ingest(tiny_params(tmp_path, paths={"raw": str(tmp_path / "t.csv")}))


def test_split_column_is_honoured_and_checked(tmp_path):
    make_shapes(tmp_path / "imgs", {"circle": 6, "square": 6})
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    splits = ["train", "train", "train", "val", "test", "test"] * 2
    table = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f in files],
                  "label": [f.parent.name for f in files], "split": splits}).to_csv(table, index=False)
    p = tiny_params(tmp_path, paths={"raw": str(table)})
    ingest(p)
    df = read_manifest(p.paths.prepared)
    assert sorted(df["split"].value_counts().items()) == [("test", 4), ("train", 6), ("val", 2)]

    # A class without val images is fine (it borrows the filter's calibration); without test, not.
    pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f in files],
                  "label": [f.parent.name for f in files],
                  "split": ["train"] * 5 + ["test"] + splits[6:]}).to_csv(table, index=False)
    ingest(p)
    assert not ((read_manifest(p.paths.prepared)["label"] == "circle")
                & (read_manifest(p.paths.prepared)["split"] == "val")).any()
    pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f in files],
                  "label": [f.parent.name for f in files],
                  "split": ["train"] * 5 + ["val"] + splits[6:]}).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"without images in some split: \{'circle': \['test'\]\}"):
        ingest(p)
    pd.DataFrame({"path": ["a.png"], "label": ["x"], "split": ["holdout"]}).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"list.csv row 2: split must be one of"):
        ingest(p)



def test_a_table_may_give_only_a_test_set(tmp_path):
    """The user's own test images for a rare class (a 6-image class, 10 test images of it they
    keep apart), the rest with an empty split: ganaug takes no test carve-out from that class (the
    GAN keeps its 6 images) and draws the other classes' split as for an ImageFolder."""
    make_shapes(tmp_path / "imgs", {"circle": 16, "square": 60})
    circles = sorted((tmp_path / "imgs" / "circle").glob("*.png"))
    squares = sorted((tmp_path / "imgs" / "square").glob("*.png"))
    rows = ([(c, "circle", "test") for c in circles[:10]] + [(c, "circle", "") for c in circles[10:]]
            + [(s, "square", "") for s in squares])
    table = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f, _, _ in rows], "label": [r[1] for r in rows],
                  "split": [r[2] for r in rows]}).to_csv(table, index=False)
    p = tiny_params(tmp_path, paths={"raw": str(table)})
    report = ingest(p)
    df = read_manifest(p.paths.prepared)
    circle = df[df["label"] == "circle"]
    assert sorted(circle.loc[circle["split"] == "test", "sample_id"]) == sorted(
        circle.loc[circle["split_given"].astype(bool), "sample_id"])        # exactly the user's test images
    assert (circle["split"] == "test").sum() == 10 and (circle["split"] == "train").sum() == 6
    assert "10 test given by you" in report["classes"]["circle"]["why"]
    # The square class, nothing given: the same split an ImageFolder of those files would get.
    square = df[df["label"] == "square"]
    assert not square["split_given"].astype(bool).any()
    folder = tiny_params(tmp_path / "as-folder", paths={"raw": str(tmp_path / "imgs")})
    ingest(folder)
    alone = read_manifest(folder.paths.prepared)
    alone = alone[alone["label"] == "square"].set_index("sample_id")["split"]
    assert square.set_index("sample_id")["split"].sort_index().equals(alone.sort_index())

def test_demo_data_is_long_tailed_with_a_balanced_test_split(tmp_path):
    from ganaug.pipeline.demo_data import demo_data
    p = tiny_params(tmp_path, paths={"raw": str(tmp_path / "data/demo/index.csv")}, demo={"size": 8})
    train_counts = demo_data(p)
    assert train_counts["3"] < 20 and train_counts["8"] < 20 and train_counts["0"] > 90
    ingest(p)
    df = read_manifest(p.paths.prepared)
    test = df[df["split"] == "test"]["label"].value_counts()
    assert test.min() >= 40  # rare classes are rare in train, not in test



def test_parallel_ingest_equals_serial_ingest(params, tmp_path):
    """Worker processes change nothing but speed: the same manifest, pixel array and quarantine
    report, in the same order, as one process."""
    from ganaug.pipeline.store.pixels import PIXELS, open_pixels
    from tests.conftest import tiny_params

    raw = Path(params.paths.raw)
    (raw / "circle" / "empty.png").write_bytes(b"")
    (raw / "square" / "cut.png").write_bytes((raw / "square" / "square-001.png").read_bytes()[:60])
    runs = {}
    for workers in (1, 2):
        p = tiny_params(tmp_path, ingest={"workers": workers},
                        paths={"prepared": str(tmp_path / f"prepared-{workers}"),
                               "reports": str(tmp_path / f"reports-{workers}")})
        report = ingest(p)
        runs[workers] = (report, read_manifest(p.paths.prepared, check_files=True),
                         (Path(p.paths.prepared) / PIXELS).read_bytes())
    (r1, m1, px1), (r2, m2, px2) = runs[1], runs[2]
    assert m1.equals(m2) and px1 == px2
    assert r1["quarantined"] == r2["quarantined"] and len(r1["quarantined"]) == 2
    assert open_pixels(tmp_path / "prepared-2", len(m2)).shape[0] == len(m2)


def test_an_image_folder_per_split_gives_the_users_test_set(tmp_path):
    """raw/train/<class>, raw/test/<class> (torchvision's layout): the test folder's images are
    the test split, nothing is carved out of train for test, val is still drawn from train. A
    dataset whose classes happen to be named train and test (images directly inside) stays an
    ImageFolder of those two classes."""
    raw = tmp_path / "raw"
    make_shapes(raw / "train", {"circle": 8, "square": 40})
    make_shapes(raw / "test", {"circle": 12, "square": 12}, seed=1)
    p = tiny_params(tmp_path, paths={"raw": str(raw)})
    report = ingest(p)
    df = read_manifest(p.paths.prepared)
    test = df[df["split"] == "test"]
    assert len(test) == 24 and test["split_given"].astype(bool).all()
    assert set(test["sample_id"]) == set(df.loc[df["split_given"].astype(bool), "sample_id"])
    per = df.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert per.loc["circle", "train"] + per.loc["circle", "val"] == 8        # the GAN keeps all of train but val
    assert per.loc["square", "val"] > 0 and per.loc["square", "test"] == 12  # val drawn; test only the user's
    assert "12 test given by you" in report["classes"]["square"]["why"]

    named = tmp_path / "named"
    make_shapes(named, {"train": 5, "test": 5})  # classes called train and test: images directly inside
    q = tiny_params(tmp_path / "q", paths={"raw": str(named)})
    ingest(q)
    assert set(read_manifest(q.paths.prepared)["label"]) == {"train", "test"}


def test_a_given_split_survives_the_users_own_slips(tmp_path):
    """The review's inputs: a split column of train alone (an augmented set from a table with a
    full split, handed back) is no split, drawn as for an ImageFolder; a test image also listed
    earlier with an empty split stays the user's test image; ganaug's batches inside raw/train
    are synthetic, never a class; a split layout with a `valid` folder is an error naming it."""
    make_shapes(tmp_path / "imgs", {"circle": 12, "square": 12})
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    table = tmp_path / "list.csv"
    rel = [str(f.relative_to(tmp_path)) for f in files]
    labels = [f.parent.name for f in files]
    pd.DataFrame({"path": rel, "label": labels, "split": ["train"] * len(files)}).to_csv(table, index=False)
    p = tiny_params(tmp_path, paths={"raw": str(table)})
    ingest(p)
    df = read_manifest(p.paths.prepared)
    assert not df["split_given"].astype(bool).any() and {"train", "test"} <= set(df["split"])

    # The whole folder listed with empty splits, then one circle again as split=test (a copy).
    (tmp_path / "held").mkdir()
    copy = tmp_path / "held" / "c.png"
    copy.write_bytes(files[0].read_bytes())
    pd.DataFrame({"path": rel + ["held/c.png"], "label": labels + ["circle"],
                  "split": [""] * len(files) + ["test"]}).to_csv(table, index=False)
    report = ingest(p)
    df = read_manifest(p.paths.prepared)
    kept = df[df["split_given"].astype(bool)]
    assert len(kept) == 1 and kept["split"].iloc[0] == "test" and kept["label"].iloc[0] == "circle"
    assert (df[df["label"] == "circle"]["split"] == "test").sum() == 1        # no carve-out beside it
    assert [d["path"] for d in report["duplicates"]] == [rel[0]]

    raw = tmp_path / "raw"
    make_shapes(raw / "train", {"circle": 8, "square": 8})
    make_shapes(raw / "test", {"circle": 3, "square": 3}, seed=1)
    make_shapes(raw / "train" / "ganaug-batches" / "b1", {"circle": 2})
    (raw / "train" / "README.txt").write_text("our data")
    q = tiny_params(tmp_path / "q", paths={"raw": str(raw)})
    report = ingest(q)
    assert set(read_manifest(q.paths.prepared)["label"]) == {"circle", "square"}
    assert report["skipped_synthetic"] == 2 and any("train/README.txt" in i for i in report["ignored"])
    (raw / "test").rename(raw / "valid")
    make_shapes(raw / "test", {"circle": 3, "square": 3}, seed=2)
    with pytest.raises(DataError, match=r"\['valid'\] is not a split folder"):
        ingest(q)
