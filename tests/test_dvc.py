"""`dvc repro` for real, in a temporary git + DVC repository holding this project's stages."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganaug.pipeline.filter import ACCEPT_ALL
from ganaug.pipeline.store.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "demo": {"size": 8},
    "ingest": {"size": 8},
    "train": {"steps": 20, "width": 8, "z_dim": 16, "batch_size": 16, "checkpoint_every": 10},
    # Mechanics, not quality: a 20-step GAN's images would (rightly) meet closed guards and gate.
    "filter": dict(ACCEPT_ALL),
    "evaluate": {"epochs": 1, "repeats": 1, "width": 8, "min_gain": None, "synthetic_shares": [1.0]},
}


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def set_params(repo: Path, changes: dict):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_dvc_repro_runs_once_and_reruns_only_downstream(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("gan", "pipeline", "dvc.yaml", "params.yaml"):
        src = REPO / item
        shutil.copytree(src, repo / item, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() \
            else shutil.copy(src, repo / item)
    set_params(repo, TINY)
    sh(["git", "init", "-q"], repo)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], repo)
    sh(["dvc", "init", "-q"], repo)

    first = sh(["dvc", "repro"], repo)
    assert ran(first) == ["demo_data", "ingest", "train", "generate", "filter", "evaluate", "append"]
    for folder in ("data/prepared", "data/candidates", "data/accepted", "data/augmented"):
        df = read_manifest(repo / folder, check_files=True)  # every manifest validates
        assert set(df.loc[df["source"] == "synthetic", "split"]) <= {"train"}
    aug = read_manifest(repo / "data/augmented")
    assert (aug["source"] == "synthetic").any()
    assert (repo / "dvc.lock").is_file()

    assert ran(sh(["dvc", "repro"], repo)) == []  # nothing changed, nothing runs

    # A threshold nothing passes: filter's output surely changes, so evaluate and append follow.
    set_params(repo, {"filter": {"mode": "absolute", "threshold": 1.0e9}})
    assert ran(sh(["dvc", "repro"], repo)) == ["filter", "evaluate", "append"]
    assert "up to date" in sh(["dvc", "status"], repo)
    assert not (read_manifest(repo / "data/augmented")["source"] == "synthetic").any()
