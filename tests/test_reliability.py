"""Reliability by construction (issue 15): a stage replaces only what it made, every output knows
what it was made from, in-place append is a transaction. Each test is an instance of a class of
defect that a careless or hostile user found on main; the fix is for the class."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganaug.pipeline.append import append
from ganaug.pipeline.plumbing.errors import DataError, ParamsError
from ganaug.pipeline.evaluate import evaluate
from ganaug.pipeline.filter import filter_candidates
from ganaug.pipeline.generate import generate
from ganaug.pipeline.ingest import ingest
from ganaug.pipeline.store.manifest import read_manifest
from ganaug.pipeline.plumbing.params import Params, load_params
from ganaug.pipeline.stages import run
from ganaug.pipeline.store.versioned import BATCHES_DIR, STEPS
from tests.conftest import make_host, make_shapes, sh, tiny_overrides, tiny_params


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- ownership: outputs replace only what ganaug made ---------------------------------
def test_an_output_pointing_at_the_repository_is_refused_from_any_folder(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    make_shapes(repo / "data" / "raw", {"circle": 5, "square": 5})
    sh(repo, "git", "init", "-q")
    (repo / "README").write_text("history")
    sh(repo, "git", "add", "README")
    sh(repo, "git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "one")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    before = _tree(repo / ".git")
    for target in ("../.git", "..", "../.git/objects"):
        p = load_params(None, ["paths.raw=../data/raw", f"paths.prepared={target}", "ingest.size=8"])
        with pytest.raises(ParamsError, match="repository|working folder|.git"):
            run("ingest", p)
    assert _tree(repo / ".git") == before


def test_a_folder_ganaug_did_not_make_is_never_replaced(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 5, "square": 5})
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("months of work")
    p = tiny_params(tmp_path, paths={"prepared": str(mine)})
    with pytest.raises(DataError, match="not made by ganaug"):
        run("ingest", p)
    assert _tree(mine) == {"chapter1.tex": b"months of work"}
    run("ingest", tiny_params(tmp_path))          # its own folder: made, then replaced freely
    run("ingest", tiny_params(tmp_path))
    assert (tmp_path / "data" / "prepared" / ".ganaug.json").is_file()


def test_the_folders_a_table_lists_are_inputs(tmp_path):
    make_shapes(tmp_path / "data" / "raw", {"circle": 5, "square": 5})
    rows = [{"path": f"{k}/{f.name}", "label": k} for k in ("circle", "square")
            for f in sorted((tmp_path / "data" / "raw" / k).iterdir())]
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "raw" / "index.csv", index=False)
    before = _tree(tmp_path / "data" / "raw")
    p = tiny_params(tmp_path, paths={"raw": str(tmp_path / "data/raw/index.csv"),
                                     "prepared": str(tmp_path / "data/raw/circle")})
    with pytest.raises(ParamsError, match="images paths.raw lists"):
        run("ingest", p)
    assert _tree(tmp_path / "data" / "raw") == before


def test_init_never_replaces_the_repositorys_own_params(tmp_path, monkeypatch):
    from ganaug.pipeline.plumbing.cli import main

    host = tmp_path / "host"
    make_shapes(host / "images", {"circle": 4, "square": 4})
    sh(host, "git", "init", "-q")
    sh(host, "dvc", "init", "-q")
    (host / "params.yaml").write_text("lr: 0.1  # the user's own\n")
    monkeypatch.chdir(host)
    assert main(["init", "--dir", ".", "--data", "images"]) == 2
    assert (host / "params.yaml").read_text() == "lr: 0.1  # the user's own\n"
    assert not (host / "dvc.yaml").exists()


def test_a_second_writer_of_an_output_fails_clearly_and_the_first_finishes(tmp_path):
    from ganaug.pipeline.store.files import output_lock

    make_shapes(tmp_path / "raw", {"circle": 5, "square": 5})
    p = tiny_params(tmp_path)
    held, release = threading.Event(), threading.Event()

    def first_writer():
        with output_lock(Path(p.paths.prepared)):
            held.set()
            release.wait(30)

    t = threading.Thread(target=first_writer)
    t.start()
    held.wait(30)
    try:  # another process: the same lock file, taken by a subprocess's ingest
        done = subprocess.run([sys.executable, "-m", "ganaug.pipeline.plumbing.cli", "ingest",
                               *[a for o in tiny_overrides(tmp_path) for a in ("--set", o)]],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        release.set()
        t.join()
    assert done.returncode == 2 and "another ganaug process is writing it" in done.stderr
    assert not Path(p.paths.prepared).exists()
    run("ingest", p)  # once the first is done, the folder is free


def test_cleanup_removes_only_ganaugs_own_temporaries(tmp_path):
    from ganaug.pipeline.store.files import LISTING, OWNER, TMP_TOKEN, atomic_dir

    dest = tmp_path / "prepared"
    users = tmp_path / "prepared.tmp-notes.txt"     # the user's, named alike
    users.write_text("keep me")
    live = tmp_path / f"prepared.tmp-{os.getppid()}-0123abcd"  # a live process's work in progress
    live.mkdir()
    dead = tmp_path / "prepared.tmp-999999999-89abcdef"         # a killed run's: its token names it
    dead.mkdir()
    (dead / TMP_TOKEN).write_text(dead.name)
    # Issue 28: a user's backup named like a temporary, even a copy of a ganaug folder (its OWNER
    # record and a token naming another folder), or a folder named exactly like one without the
    # token: not provably ganaug's temporaries, kept.
    backup = tmp_path / "prepared.tmp-20240101"
    backup.mkdir()
    (backup / OWNER).write_text('{"made_by": "ganaug"}')
    lookalike = tmp_path / "prepared.tmp-999999998-0badcafe"
    lookalike.mkdir()
    (lookalike / TMP_TOKEN).write_text("prepared.tmp-999999999-89abcdef")  # copied from elsewhere
    with atomic_dir(dest) as tmp:
        (tmp / "x").write_text("new")
    assert users.read_text() == "keep me" and live.is_dir() and not dead.exists()
    assert backup.is_dir() and lookalike.is_dir()
    assert sorted(p.name for p in dest.iterdir()) == sorted([OWNER, LISTING, "x"])  # no token left in the output


# -- provenance: every output knows what it was made from ------------------------------
def test_append_refuses_a_gate_decision_about_other_images(trained):
    p = tiny_params(Path(trained.paths.raw).parent, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    other_seed = tiny_params(Path(trained.paths.raw).parent, filter={"mode": "none"}, generate={"seed": 7})
    generate(other_seed)
    filter_candidates(other_seed)             # new images that evaluate never judged
    with pytest.raises(DataError, match="gate decided on other images"):
        append(other_seed)
    assert not Path(p.paths.augmented).exists()
    evaluate(other_seed)
    assert append(other_seed)["synthetic"] > 0


def test_append_refuses_a_gate_decided_under_other_params(trained):
    """Issue 28's case: a gate decided with the gate off (min_gain null) is not a decision under
    min_gain 0.5; nor, when it closed, under another plan (the baseline whose folder lands)."""
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    assert evaluate(p)["gate"]["passed"]  # min_gain=null in the tiny params
    strict = tiny_params(root, filter={"mode": "none"}, evaluate={"min_gain": 0.5})
    with pytest.raises(DataError, match="decided under other params.*evaluate changed"):
        append(strict)
    assert not Path(p.paths.augmented).exists()
    other_plan = tiny_params(root, filter={"mode": "none"}, generate={"sampling_strategy": "minority"})
    with pytest.raises(DataError, match="generate.sampling_strategy changed"):
        append(other_plan)
    faster = tiny_params(root, filter={"mode": "none"}, evaluate={"loader_workers": 1})  # not a judging param
    assert append(faster)["synthetic"] > 0


def test_a_stage_run_with_other_image_params_than_its_inputs_is_refused(trained):
    root = Path(trained.paths.raw).parent
    generate(tiny_params(root, filter={"mode": "none"}))
    rgb = tiny_params(root, filter={"mode": "none"}, ingest={"channels": 3})
    with pytest.raises(DataError, match="1 channel.*ingest.channels=3.*re-run `ganaug ingest`"):
        filter_candidates(rgb)
    assert not Path(rgb.paths.accepted).exists()


def test_stale_candidates_are_refused_by_the_filter(trained):
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    make_shapes(root / "raw", {"circle": 2}, seed=9)  # new images: ingest again, not train or generate
    ingest(p)
    with pytest.raises(DataError, match="trained on another|re-run `ganaug (train|generate)`"):
        filter_candidates(p)


def test_an_augmented_set_ingested_again_keeps_every_real_image(tmp_path):
    """The augmented set is a documented input. Handed back, ganaug's own val/test carve-outs
    in its manifest are not the user's split: main took them as given and the set lost real
    images every round (22 -> 13)."""
    make_shapes(tmp_path / "raw", {"circle": 22, "square": 22, "cross": 6})
    p = tiny_params(tmp_path, filter={"mode": "none"}, evaluate={"min_gain": 1.0})  # gate closed: real only
    counts = []
    for round_ in range(2):
        for stage in ("ingest", "train", "generate", "filter", "evaluate", "append"):
            run(stage, p)
        augmented = read_manifest(p.paths.augmented)
        counts.append(int(((augmented["label"] == "circle") & (augmented["source"] == "real")).sum()))
        nxt = tmp_path / f"round{round_}"
        os.replace(p.paths.augmented, nxt)  # the next round's input
        p = tiny_params(tmp_path, paths={"raw": str(nxt)}, filter={"mode": "none"}, evaluate={"min_gain": 1.0},
                        train={"resume": False})
    assert counts == [22, 22]


# -- in-place append is a transaction --------------------------------------------------
@pytest.mark.slow
def test_in_place_append_killed_at_every_step_completes_or_rolls_back(trained, tmp_path):
    """SIGKILL (no cleanup runs) after each step of an in-place append; the re-run either
    completes that version or rolls it back and makes it: either way one commit, one tag, the
    batch present, DVC and git clean."""
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    for step in STEPS:
        host = make_host(tmp_path, f"host-{step}")
        overrides = tiny_overrides(root, filter={"mode": "none"}, append={"target": str(host / "train")})
        env = {**os.environ, "GANAUG_KILL_AT": step}
        killed = subprocess.run([sys.executable, "-m", "ganaug.pipeline.plumbing.cli", "append",
                                 *[a for o in overrides for a in ("--set", o)]],
                                env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert killed.returncode == -9, f"{step}: {killed.stderr[-2000:]}"
        again = append(load_params(None, overrides))
        tags = sh(host, "git", "tag").split()
        assert tags == [again["tag"]], f"{step}: tags {tags}"
        assert sh(host, "git", "log", "--format=%s").count("append batch") == 1, step
        batch = host / "train" / BATCHES_DIR / again["batch"]
        assert len(read_manifest(batch, check_files=True)) == again["images"] > 0, step
        assert sh(host, "git", "status", "--porcelain").strip() == "", step
        status = sh(host, "dvc", "status")
        assert status.strip() == "" or "up to date" in status, f"{step}: {status}"
        assert not (host / ".git" / "ganaug-append.json").exists(), step
        expected = "completed" if step in ("commit", "tag") else "rolled back"
        assert again.get("recovered") == expected, f"{step}: {again.get('recovered')}"


def test_a_link_planted_in_ganaugs_folder_never_reaches_the_training_set(trained, tmp_path):
    p = tiny_params(Path(trained.paths.raw).parent, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    accepted = read_manifest(p.paths.accepted)
    secret = tmp_path / "secret.png"
    Image.new("L", (8, 8), 255).save(secret)
    victim = Path(p.paths.accepted) / accepted["path"].iloc[0]
    victim.unlink()
    victim.symlink_to(secret)
    with pytest.raises(DataError, match="not a regular file ganaug wrote"):
        append(p)
    assert not Path(p.paths.augmented).exists()


# -- inputs normalized and reported ------------------------------------------------------
def test_one_class_name_in_two_unicode_forms_is_one_class_and_reported(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    make_shapes(tmp_path / "raw", {"circle": 6, "cross": 6})
    for name, shape, seed in ((nfc, "square", 1), (nfd, "square", 2)):
        make_shapes(tmp_path / "tmp", {shape: 3}, seed=seed)
        os.replace(tmp_path / "tmp" / shape, tmp_path / "raw" / name)
    report = ingest(tiny_params(tmp_path))
    assert nfc in report["classes"] and nfd not in report["classes"]
    assert sum(report["classes"][nfc][s] for s in ("train", "val", "test")) == 6
    assert report["warnings"]["labels_normalized"] == {nfd: nfc}


def _colour_only_classes(raw: Path):
    """Red and green squares of one grey (luma 60): told apart by colour alone."""
    for name, colour in (("red", (200, 0, 0)), ("green", (0, 102, 0))):
        (raw / name).mkdir(parents=True)
        for i in range(4):
            im = Image.new("RGB", (16, 16), (255, 255, 255))
            im.paste(colour, (2 + i, 2, 10 + i, 10))
            im.save(raw / name / f"{i}.png")


def test_classes_told_apart_by_colour_alone_are_a_clear_error_in_grey(tmp_path):
    _colour_only_classes(tmp_path / "raw")
    with pytest.raises(DataError, match="no usable image"):
        ingest(tiny_params(tmp_path, ingest={"size": 16}))
    ok = ingest(tiny_params(tmp_path, ingest={"size": 16, "channels": 3}))
    assert set(ok["classes"]) == {"red", "green"}


def test_identical_after_grey_says_how_to_keep_colour(tmp_path):
    _colour_only_classes(tmp_path / "raw")
    make_shapes(tmp_path / "raw", {"circle": 4})
    p = tiny_params(tmp_path, ingest={"size": 16, "on_bad_file": "fail"})
    with pytest.raises(DataError, match="ingest.channels=3"):
        ingest(p)


def test_a_fifo_is_never_opened(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 4, "square": 4})
    os.mkfifo(tmp_path / "raw" / "circle" / "pipe.png")
    rows = [{"path": str(f.relative_to(tmp_path / "raw")), "label": f.parent.name}
            for f in sorted((tmp_path / "raw").rglob("*.png"))]
    pd.DataFrame(rows).to_csv(tmp_path / "raw" / "index.csv", index=False)
    report = ingest(tiny_params(tmp_path, paths={"raw": str(tmp_path / "raw" / "index.csv")}))
    assert [q["reason"] for q in report["quarantined"]] == ["not a regular file (a pipe, device or socket)"]
    os.mkfifo(tmp_path / "params-fifo")
    with pytest.raises(ParamsError, match="not a regular file"):
        load_params(tmp_path / "params-fifo")


def test_a_huge_transparent_png_decodes_in_bounded_memory(tmp_path):
    """7000 x 7000 RGBA, 190 KB on disk, under max_pixels: main took 5.1 GB per decoder."""
    (tmp_path / "raw" / "big").mkdir(parents=True)
    Image.new("RGBA", (7000, 7000), (255, 0, 0, 128)).save(tmp_path / "raw" / "big" / "big.png")
    make_shapes(tmp_path / "raw", {"big": 3, "circle": 4})
    overrides = tiny_overrides(tmp_path, ingest={"workers": 1})
    code = ("import resource, sys; from ganaug.pipeline.plumbing.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "ingest", *[a for o in overrides for a in ("--set", o)]],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split("PEAK")[1].split()[0]) / 1024
    assert peak_mb < 1500, f"{peak_mb:.0f} MB"  # the decoded image is 196 MB; main held 5,100


def test_a_corrupt_manifest_is_a_clear_error(trained):
    (Path(trained.paths.prepared) / "manifest.parquet").write_bytes(b"PAR1 not really")
    # Its sealed record's hash catches it first; without one, parquet's reader would.
    with pytest.raises(DataError, match="(not the file ganaug wrote there|not a readable manifest).*re-run"):
        read_manifest(trained.paths.prepared)


# -- params as DVC reads them ----------------------------------------------------------
def test_params_read_as_dvc_reads_them(tmp_path):
    assert load_params(None, ["paths.raw=data/run #1/raw"]).paths.raw == "data/run #1/raw"
    assert load_params(None, ["append.target=null"]).append.target is None
    (tmp_path / "twice.yaml").write_text("train:\n  steps: 5\ntrain:\n  steps: 6\n")
    with pytest.raises(ParamsError, match="duplicate key 'train'"):
        load_params(tmp_path / "twice.yaml")
    for bad in ("train.lr_g=.nan", "evaluate.min_gain=.inf", "train.seed=-1", "evaluate.seed=4294967296"):
        with pytest.raises(ParamsError, match=bad.split("=")[0]):
            load_params(None, [bad])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is here")
def test_a_device_that_is_not_there_is_a_clear_error(trained):
    p = tiny_params(Path(trained.paths.raw).parent, train={"device": "cuda", "resume": False})
    with pytest.raises(ParamsError, match="train.device: cuda: no such device here"):
        run("train", p)


def test_a_shorter_run_never_replaces_a_longer_checkpoint(trained):
    from ganaug.pipeline.plumbing.errors import TrainingError

    before = Path(trained.paths.model).read_bytes()
    shorter = tiny_params(Path(trained.paths.raw).parent, train={"steps": 10})
    with pytest.raises(TrainingError, match="more than train.steps=10; nothing was changed"):
        run("train", shorter)
    assert Path(trained.paths.model).read_bytes() == before


def test_csv_reports_are_safe_to_open_in_a_spreadsheet(tmp_path):
    from ganaug.pipeline.store.files import write_csv

    write_csv(pd.DataFrame({"label": ["=HYPERLINK(\"http://x\")", "+1", "cat"], "n": [-1, 2, 3]}), tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["label"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "cat"] and back["n"].tolist() == [-1, 2, 3]


def test_the_frechet_distance_of_a_one_image_class_is_a_number():
    from ganaug.pipeline.judges.classifier import frechet_distance

    rng = np.random.default_rng(0)
    assert np.isfinite(frechet_distance(rng.normal(size=(1, 16)), rng.normal(size=(32, 16))))


# -- properties: every hostile value is a clear error or a correct result ---------------
KEYS = [f"{s}.{k}" for s, m in Params.model_fields.items() for k in m.annotation.model_fields]
HOSTILE = st.one_of(st.sampled_from(["nan", ".nan", "-.inf", "1e400", "-1", "0", "2147483648", "null", "~", "[]",
                                     "{}", "a #b", "'", "\"", "!!python/object:os.system", "&a", "*a", "%", "@x",
                                     "true", "yes", "0x10", "1_000", "café", "\x00", "\t", " ", ""]),
                    st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True).map(str),
                    st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), HOSTILE), max_size=4))
def test_any_override_is_a_valid_params_or_a_params_error(pairs):
    try:
        p = load_params(None, [f"{k}={v}" for k, v in pairs])
    except ParamsError:
        return
    assert isinstance(p, Params)
    for value in (p.train.lr_g, p.train.lr_d, p.evaluate.lr, p.filter.threshold):
        assert np.isfinite(value)
    assert 0 <= p.train.seed < 2**31 and 0 <= p.evaluate.seed < 2**31


COLUMNS = ["sample_id", "path", "label", "split", "source", "d_score", "seed", "checkpoint", "split_given"]
CELL = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["../x", "/etc/passwd", "a/../../b", "train", "val",
                                                                  "real", "synthetic", "C:x", "~/x", "ok.png"]),
                 st.integers(-5, 5), st.floats(allow_nan=True), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries({c: CELL for c in COLUMNS}), max_size=5),
       st.sets(st.sampled_from(COLUMNS)))
def test_any_manifest_is_read_or_refused_with_a_data_error(tmp_path_factory, rows, dropped):
    folder = tmp_path_factory.mktemp("m")
    df = pd.DataFrame(rows, columns=COLUMNS).drop(columns=sorted(dropped)).astype(object)
    try:
        df.to_parquet(folder / "manifest.parquet")
    except Exception:
        return  # pyarrow cannot write that mix of types: no manifest to read
    try:
        read = read_manifest(folder)
    except DataError:
        return
    for path in read["path"]:  # what was read stays inside its folder
        assert not str(path).startswith(("/", "~")) and ".." not in Path(str(path)).parts


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 5, "square": 5})
    p = tiny_params(tmp_path, ingest={"size": 128}, evaluate={"batch_size": 65_536})  # the bound; ~400 GB
    with pytest.raises(ParamsError, match="evaluate.batch_size needs about .* GiB .* use a smaller batch"):
        run("evaluate", p)
    for name in ("train", "generate", "filter", "evaluate"):  # the defaults fit on a 4 GiB machine
        from ganaug.pipeline.plumbing.guards import check_memory
        from ganaug.pipeline.stages import ALL
        check_memory(ALL[name], Params(), available=4 * 2**30)


def test_a_class_named_like_ganaugs_batches_folder_is_refused(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 5, "square": 5})
    rows = [{"path": str(f.relative_to(tmp_path / "raw")), "label": "ganaug-batches" if "circle" in f.name else "square"}
            for f in sorted((tmp_path / "raw").rglob("*.png"))]
    pd.DataFrame(rows).to_csv(tmp_path / "raw" / "t.csv", index=False)
    with pytest.raises(DataError, match="reserved"):
        ingest(tiny_params(tmp_path, paths={"raw": str(tmp_path / "raw" / "t.csv")}))


def test_append_again_in_a_clone_without_tags_keeps_the_committed_batch(trained, tmp_path):
    """Without its tag (a --no-tags clone), a committed batch is still appended: its folder is the
    set's tracked state. And a version killed after its commit is completed even when another
    commit came after it."""
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    host = make_host(tmp_path)
    overrides = tiny_overrides(root, filter={"mode": "none"}, append={"target": str(host / "train")})
    first = append(load_params(None, overrides))
    sh(host, "git", "tag", "-d", first["tag"])
    again = append(load_params(None, overrides))
    batch = host / "train" / BATCHES_DIR / first["batch"]
    assert not again["changed"] and len(read_manifest(batch, check_files=True)) == first["images"]

    other = make_host(tmp_path, "host-later")
    overrides = tiny_overrides(root, filter={"mode": "none"}, append={"target": str(other / "train")})
    killed = subprocess.run([sys.executable, "-m", "ganaug.pipeline.plumbing.cli", "append",
                             *[a for o in overrides for a in ("--set", o)]],
                            env={**os.environ, "GANAUG_KILL_AT": "commit"}, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (other / "NOTES").write_text("a commit of the user's after the killed append\n")
    sh(other, "git", "add", "NOTES")
    sh(other, "git", "commit", "-q", "-m", "notes")
    done = append(load_params(None, overrides))
    assert done["recovered"] == "completed" and sh(other, "git", "tag").split() == [done["tag"]]
    assert (other / "train" / BATCHES_DIR / done["batch"]).is_dir()


# -- the review's instances (issue 15, second round) -----------------------------------

def test_images_reingested_another_way_are_trained_afresh_not_stuck(trained):
    """Same files, other ingest.resize: the sample ids (content hashes) stay, the pixels change.
    Train must not resume the old checkpoint as if nothing changed (it then never re-saved it,
    and generate refused the checkpoint for ever, asking to re-run train)."""
    from ganaug.pipeline.train import train
    root = Path(trained.paths.raw).parent
    padded = tiny_params(root, ingest={"resize": "pad"})
    ingest(padded)
    metrics = train(padded)
    assert metrics["resumed_from"] == 0 and metrics["steps_this_run"] == padded.train.steps
    assert sum(generate(padded)["candidates"].values()) > 0


def test_every_copy_of_pixels_shared_across_labels_is_quarantined(tmp_path):
    """Three files of one picture, two under 'a' and one under 'b': main quarantined the first
    'a' and the 'b', and kept the second 'a'."""
    make_shapes(tmp_path / "raw", {"circle": 4, "square": 4})
    same = Image.new("L", (8, 8), 40)
    for i, label in enumerate(("circle", "circle", "square")):
        same.save(tmp_path / "raw" / label / f"same-{i}.png", pnginfo=None, compress_level=i + 1)  # other bytes
    report = ingest(tiny_params(tmp_path))
    quarantined = sorted(q["path"] for q in report["quarantined"])
    assert quarantined == sorted(str(Path(label) / f"same-{i}.png")
                                 for i, label in enumerate(("circle", "circle", "square")))
    assert report["images"] == 8


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_large_transparent_image_shrinks_without_a_fringe(mode):
    """A red square on a transparent ground (a colour key in RGB, alpha in RGBA), four times
    larger than its target: averaging before compositing showed the hidden black as a fringe."""
    import io

    from ganaug.pipeline.store.images import decode
    im = Image.new(mode, (400, 400), (0, 0, 0, 0) if mode == "RGBA" else (0, 0, 0))
    im.paste((255, 0, 0, 255) if mode == "RGBA" else (255, 0, 0), (101, 101, 299, 299))
    data = io.BytesIO()
    im.save(data, "PNG", **({"transparency": (0, 0, 0)} if mode == "RGB" else {}))
    grey = decode(data.getvalue(), 1, 10**8, "white", shrink_to=16)
    red = 76  # the luma of pure red; white and red blended are brighter, never darker
    assert grey.min() >= red and grey.max() == 255


def test_a_flat_table_beside_its_images_admits_outputs_beside_them(tmp_path):
    """data/labels.csv listing x.png lists data/ itself: an output beside the images is fine;
    one that is or holds the images' folder is still refused."""
    make_shapes(tmp_path / "shapes", {"circle": 5, "square": 5})
    data = tmp_path / "images"
    data.mkdir()
    rows = []
    for f in sorted((tmp_path / "shapes").rglob("*.png")):
        f.rename(data / f.name)
        rows.append({"path": f.name, "label": f.parent.name})
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    p = tiny_params(tmp_path, paths={"raw": str(data / "labels.csv"), "prepared": str(data / "prepared")})
    assert run("ingest", p)["images"] == 10
    pd.DataFrame([{**r, "path": f"images/{r['path']}"} for r in rows]).to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ParamsError, match="images paths.raw lists"):
        run("ingest", tiny_params(tmp_path, paths={"raw": str(tmp_path / "index.csv"), "prepared": str(data)}))
    assert len(list(data.glob("*.png"))) == 10


def test_class_names_windows_cannot_hold_are_reported(tmp_path):
    make_shapes(tmp_path / "raw", {"circle": 4, "con": 4, "what?": 4})
    report = ingest(tiny_params(tmp_path))
    assert set(report["warnings"]["labels_not_portable"]) == {"con", "what?"}
    from ganaug.pipeline.ingest import summarize
    assert "cannot be folders on Windows" in summarize(report)


def test_the_memory_guard_asks_the_device_that_runs_the_batch(tmp_path):
    from ganaug.pipeline.plumbing.guards import check_memory
    from ganaug.pipeline.stages import ALL
    big = tiny_params(tmp_path, generate={"batch_size": 4096}, ingest={"size": 32}, train={"width": 32})
    check_memory(ALL["generate"], big, available={"train.device": 2 * 2**30})  # forward only: it fits
    with pytest.raises(ParamsError, match="train.batch_size.*train.device"):
        check_memory(ALL["train"], tiny_params(tmp_path, train={"batch_size": 4096, "width": 32},
                                               ingest={"size": 32}),
                     available={"train.device": 2 * 2**30, "evaluate.device": 64 * 2**30})


def test_a_users_file_named_like_a_report_is_never_replaced(tmp_path):
    """paths.reports pointed at a folder of the user's, holding their own metrics.json: main
    overwrote it. A report file is replaced only in a folder ganaug recorded as its own."""
    make_shapes(tmp_path / "raw", {"circle": 5, "square": 5})
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "ingest.json").write_text('{"my": "own figures"}')
    with pytest.raises(DataError, match="ingest.json: a file of that name is already there.*nothing was written"):
        run("ingest", tiny_params(tmp_path, paths={"reports": str(mine)}))
    assert (mine / "ingest.json").read_text() == '{"my": "own figures"}'
    fresh = tiny_params(tmp_path, paths={"reports": str(tmp_path / "reports")})
    run("ingest", fresh)
    run("ingest", fresh)  # its own reports, recorded on the first write, are replaced freely
    assert (tmp_path / "reports" / ".ganaug.json").is_file()


def test_a_pixel_array_linked_out_of_its_folder_is_never_read(trained, tmp_path):
    """Ingest's one pixel array is what training and the augmented set are made of: a link
    planted in its place (to a file of the same size outside) is refused, not read."""
    prepared = Path(trained.paths.prepared)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes((prepared / "pixels.u8").read_bytes())
    (prepared / "pixels.u8").unlink()
    (prepared / "pixels.u8").symlink_to(outside)
    root = Path(trained.paths.raw).parent
    generate(tiny_params(root))  # generate reads no real image
    for stage, p in (("train", tiny_params(root, train={"resume": False})), ("filter", tiny_params(root))):
        with pytest.raises(DataError, match="pixels.u8: not a regular file ganaug wrote"):
            run(stage, p)


def test_an_augmented_set_exported_as_csv_keeps_its_meaning(trained):
    """Issue 28: an augmented manifest handed back as a CSV: "False" in split_given is text, and
    bool("False") is True, which made ganaug's own test carve-outs the user's fixed split (and
    dropped them from the next augmented set). Text flags are read as what they say; a flag that
    says neither is a clear error naming the column."""
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    append(p)
    aug = Path(p.paths.augmented)
    table = read_manifest(aug)
    table.assign(split_given=table["split_given"].map({True: "True", False: "False"})).to_csv(aug / "export.csv",
                                                                                             index=False)
    again = tiny_params(root / "again", paths={"raw": str(aug / "export.csv")})
    ingest(again)
    prepared = read_manifest(again.paths.prepared)
    assert not prepared["split_given"].any()  # ganaug's own carve-outs stay its own: drawn again
    assert len(prepared) == (table["source"] == "real").sum()
    table.assign(split_given="perhaps").to_csv(aug / "export.csv", index=False)
    with pytest.raises(DataError, match="split_given: 'perhaps' is not true or false"):
        ingest(again)


def test_append_checks_the_pixel_array_it_turns_into_pngs(trained):
    """Issue 28: a pixels.json whose shape is not the params' made append write scrambled
    images (train refused the same file); append now asks too."""
    root = Path(trained.paths.raw).parent
    p = tiny_params(root, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)
    shape = Path(p.paths.prepared) / "pixels.json"
    meta = json.loads(shape.read_text())
    h, w, c = meta["shape"]
    shape.write_text(json.dumps({**meta, "shape": [h * 4, w // 4, c]}))
    with pytest.raises(DataError, match="ingest.size"):
        append(p)
    assert not Path(p.paths.augmented).exists()


def _bytes_under(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_is_ganaugs_only_by_the_record_made_for_it(tmp_path):
    """Issue 28: an OWNER record copied into a user's folder, a ganaug folder whose manifest is
    not the one ganaug wrote, a folder holding a manifest.parquet and no record, and a record of
    an older ganaug that lists nothing are not ganaug's to replace (each left byte-identical);
    a ganaug folder copied whole (cp -r, a DVC checkout) still is."""
    import shutil

    from ganaug.pipeline.plumbing.errors import DataError
    from ganaug.pipeline.store.files import LISTING, OWNER, atomic_dir

    ours = tmp_path / "prepared"
    with atomic_dir(ours, made_by={"stage": "test"}) as tmp:
        (tmp / "manifest.parquet").write_bytes(b"ganaug's manifest")
        (tmp / "images").mkdir()
    cases = {}
    cases["copied record"] = tmp_path / "photos"
    (cases["copied record"] / "images").mkdir(parents=True)
    (cases["copied record"] / "images" / "cat.png").write_bytes(b"a cat")
    (cases["copied record"] / "labels.csv").write_text("cat.png,cat\n")
    shutil.copy(ours / OWNER, cases["copied record"] / OWNER)
    cases["other manifest"] = tmp_path / "other"
    cases["other manifest"].mkdir()
    shutil.copy(ours / OWNER, cases["other manifest"] / OWNER)
    shutil.copy(ours / LISTING, cases["other manifest"] / LISTING)  # the whole record, the manifest swapped
    (cases["other manifest"] / "manifest.parquet").write_bytes(b"the user's own table")
    cases["no record"] = tmp_path / "bare"
    cases["no record"].mkdir()
    (cases["no record"] / "manifest.parquet").write_bytes(b"a table")
    cases["older record"] = tmp_path / "older"
    cases["older record"].mkdir()
    (cases["older record"] / OWNER).write_text('{"made_by": "ganaug", "stage": "ingest"}')
    (cases["older record"] / "manifest.parquet").write_bytes(b"a table")
    expected = {"copied record": r"holds \['labels.csv'\], which ganaug did not write",
                "other manifest": "manifest.parquet is not the one ganaug wrote", "no record": "not made by ganaug",
                "older record": "lists no contents"}
    for case, folder in cases.items():
        before = _bytes_under(folder)
        with pytest.raises(DataError, match=expected[case]):
            with atomic_dir(folder) as tmp:
                (tmp / "x").write_text("new")
        assert _bytes_under(folder) == before, case
    copy = tmp_path / "copy"
    shutil.copytree(ours, copy)
    with atomic_dir(copy) as tmp:
        (tmp / "x").write_text("new")
    assert (copy / "x").read_text() == "new"


def test_a_report_is_replaced_only_when_its_folders_record_lists_it(tmp_path):
    """A report folder is written file by file: its OWNER record grows with each report ganaug
    writes, and a file there it does not list (the user's) is never replaced."""
    from ganaug.pipeline.plumbing.errors import DataError
    from ganaug.pipeline.store.files import write_json

    reports = tmp_path / "reports"
    write_json(reports / "metrics.json", {"run": 1})
    (reports / "notes.json").write_text("the user's")
    with pytest.raises(DataError, match="ganaug did not write"):
        write_json(reports / "notes.json", {"run": 1})
    assert (reports / "notes.json").read_text() == "the user's"
    write_json(reports / "metrics.json", {"run": 2})           # its own: replaced
    write_json(reports / "gate.json", {"run": 2})              # a new name: recorded
    write_json(reports / "gate.json", {"run": 3})
    assert json.loads((reports / "gate.json").read_text()) == {"run": 3}


def test_a_file_the_user_adds_inside_a_ganaug_folder_keeps_it_from_being_replaced(tmp_path):
    """The sealed folder lists every file ganaug wrote: a picture the user dropped into a class
    folder of ganaug's makes the folder no longer ganaug's to replace (the file would be lost
    with it); a file browser's .DS_Store, or a file removed, does not."""
    from ganaug.pipeline.plumbing.errors import DataError
    from ganaug.pipeline.store.files import atomic_dir

    dest = tmp_path / "augmented"
    with atomic_dir(dest, made_by={"stage": "test"}) as tmp:
        (tmp / "cat").mkdir()
        (tmp / "cat" / "a.png").write_bytes(b"ganaug's")
    (dest / ".DS_Store").write_bytes(b"finder")
    with atomic_dir(dest) as tmp:  # still ganaug's
        (tmp / "cat").mkdir()
        (tmp / "cat" / "a.png").write_bytes(b"ganaug's, again")
    (dest / "cat" / "a.png").unlink()  # a file removed is no loss: still ganaug's
    with atomic_dir(dest) as tmp:
        (tmp / "cat").mkdir()
        (tmp / "cat" / "a.png").write_bytes(b"ganaug's, a third time")
    (dest / "cat" / "mine.png").write_bytes(b"the user's")
    with pytest.raises(DataError, match=r"holds \['cat/mine.png'\] inside it"):
        with atomic_dir(dest) as tmp:
            (tmp / "x").write_text("new")
    assert (dest / "cat" / "mine.png").read_bytes() == b"the user's"


def test_a_report_not_ganaugs_stops_the_stage_before_its_work(trained):
    """The stage guards check the reports a stage will write before it starts: a user's own
    metrics.json in paths.reports stops evaluate at once (here before it even looks for the
    accepted set it lacks), not after minutes of training classifiers."""
    from ganaug.pipeline.stages import run

    user_file = Path(trained.paths.reports) / "metrics.json"
    user_file.write_text('{"mine": 1}\n')
    with pytest.raises(DataError, match="metrics.json: a file of that name is already there that ganaug did not write"):
        run("evaluate", trained)
    assert user_file.read_text() == '{"mine": 1}\n'
