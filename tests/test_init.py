"""`ganaug init`: ganaug's stages inside someone else's DVC repository, run with `dvc repro` there."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganaug.pipeline.plumbing.cli import main
from ganaug.pipeline.filter import ACCEPT_ALL
from ganaug.pipeline.plumbing.params import as_overrides, load_params
from ganaug.pipeline.plumbing.dvcfile import render
from ganaug.pipeline.store.manifest import read_manifest
from tests.conftest import make_shapes, sh

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_the_generated_one():
    assert (REPO / "dvc.yaml").read_text() == render(code_deps=True, demo=True, how="python -m ganaug.pipeline.plumbing.dvcfile")


def test_init_refuses_what_it_cannot_wire(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "images"]) == 2
    assert "not a DVC repository" in capsys.readouterr().err
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    assert main(["init", "--data", "images"]) == 2
    assert "dataset not found" in capsys.readouterr().err
    (tmp_path / "images").mkdir()
    assert main(["init", "--data", "images", "--set", "train.stepz=3"]) == 2
    assert "train.stepz: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "augment").exists()  # nothing half-written


def test_the_gpu_preset_is_written_into_params_yaml_where_dvc_sees_it(tmp_path, monkeypatch, capsys):
    """A preset is values written into params.yaml (nothing read behind the file's back), so DVC
    tracks them like any edit: `dvc params diff` shows what the preset changed."""
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    make_shapes(tmp_path / "data" / "images", {"circle": 6, "square": 6})
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "data/images"]) == 0
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ganaug init")
    capsys.readouterr()
    assert main(["params", "--params", "augment/params.yaml", "--preset", "gpu"]) == 0
    (tmp_path / "augment" / "params.yaml").write_text(capsys.readouterr().out)
    written = load_params(tmp_path / "augment" / "params.yaml")  # validates
    assert (written.train.width, written.train.n_dis, written.train.ada_target) == (128, 4, 0.6)
    assert written.paths.raw == "../data/images"  # the rest of the file as it was
    diff = json.loads(sh(tmp_path, "dvc", "params", "diff", "--json"))["augment/params.yaml"]
    assert (diff["train.width"]["old"], diff["train.width"]["new"]) == (32, 128)
    assert (diff["train.ada_target"]["old"], diff["train.ada_target"]["new"]) == (None, 0.6)
    # init writes the same values.
    assert main(["init", "--dir", "other", "--data", "data/images", "--preset", "gpu"]) == 0
    assert load_params(tmp_path / "other" / "params.yaml").train == written.train


@pytest.mark.slow
def test_init_then_dvc_repro_in_a_host_repository(tmp_path, monkeypatch, capsys):
    host = tmp_path / "host"
    host.mkdir()
    sh(host, "git", "init", "-q")
    sh(host, "dvc", "init", "-q")
    make_shapes(host / "data" / "images", {"circle": 20, "square": 20, "cross": 6})
    sh(host, "dvc", "add", "-q", "data/images")
    monkeypatch.chdir(host)
    tiny = ["ingest.size=8", "train.steps=20", "train.width=8", "train.z_dim=16", "train.batch_size=16",
            "evaluate.epochs=1", "evaluate.repeats=1", "evaluate.width=8", "evaluate.arm_classifier.epochs=1",
            "evaluate.arm_classifier.width=8", "evaluate.arm_classifier.min_steps=1", *as_overrides({"filter": ACCEPT_ALL}), 'evaluate.min_gain=null', 'evaluate.synthetic_shares=[1.0]']
    assert main(["init", "--dir", "augment", "--data", "data/images", *[a for t in tiny for a in ("--set", t)]]) == 0
    message = capsys.readouterr().out
    assert "augment/data/augmented" in message and "dvc repro augment/dvc.yaml" in message
    params = yaml.safe_load((host / "augment" / "params.yaml").read_text())
    assert params["paths"]["raw"] == "../data/images" and params["train"]["steps"] == 20

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["dvc", "repro", "augment/dvc.yaml"], cwd=host, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.findall(r"Running stage '([^']+)'", done.stdout + done.stderr)
    assert ran == [f"augment/dvc.yaml:{s}" for s in ("ingest", "train", "generate", "filter", "evaluate", "append")]
    aug = read_manifest(host / "augment" / "data" / "augmented", check_files=True)
    assert (aug["source"] == "synthetic").any() and set(aug["label"]) == {"circle", "square", "cross"}
