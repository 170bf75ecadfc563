"""Fixtures: shapes drawn here (exact, tiny), tiny params, and one shared trained pipeline."""
from __future__ import annotations

import os

# pytest-xdist (pyproject: -n 2) runs test files side by side: each worker, and the subprocesses
# it starts, gets its share of the cores, or torch's threads spin (2-5x slower on 2 cores).
# Set before torch is imported anywhere in the worker.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_k, _share)

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ganaug.pipeline.filter import GUARDS_OFF
from ganaug.pipeline.plumbing.params import Params, load_params

SHAPES = ("circle", "square", "cross")


def draw_shape(kind: str, rng: np.random.Generator, size: int = 24, rgb: bool = False) -> Image.Image:
    """A white shape of random position and size on black (colour when rgb)."""
    im = Image.new("RGB" if rgb else "L", (size, size), 0)
    d = ImageDraw.Draw(im)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    fill = tuple(int(v) for v in rng.integers(128, 256, 3)) if rgb else int(rng.integers(160, 256))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        w = max(1, r // 3)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    return im


def make_shapes(root: Path, counts: dict[str, int], seed: int = 0, rgb: bool = False, ext: str = "png") -> Path:
    rng = np.random.default_rng(seed)
    for kind, n in counts.items():
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            draw_shape(kind, rng, rgb=rgb).save(root / kind / f"{kind}-{i:03d}.{ext}")
    return root


def prepared_pixels(folder: str | Path) -> np.ndarray:
    """Ingest's images (N x H x W x C uint8), row i the manifest's row i: it writes no file per image."""
    from ganaug.pipeline.store.manifest import read_manifest
    from ganaug.pipeline.store.pixels import open_pixels

    return np.asarray(open_pixels(folder, len(read_manifest(folder))))


def tiny_params(tmp: Path, **sections) -> Params:
    """Params with every path under tmp and settings small enough for seconds-long stages."""
    return load_params(None, tiny_overrides(tmp, **sections))


def tiny_overrides(tmp: Path, **sections) -> list[str]:
    """The same, as `section.key=value` strings (what the CLI and the flows take)."""
    overrides = {
        "ingest": {"size": 8},
        "train": {"steps": 30, "batch_size": 16, "width": 8, "z_dim": 16, "checkpoint_every": 10},
        "generate": {"batch_size": 64},
        # A 30-step GAN makes junk: the filter's guards and evaluate's gate (on by default) would
        # rightly let nothing through. Tests of the mechanics around them turn them off here;
        # the guards and the gate have tests of their own that turn them on.
        "filter": dict(GUARDS_OFF),
        "evaluate": {"epochs": 2, "repeats": 1, "width": 8, "batch_size": 32, "min_gain": None,
                     "synthetic_shares": [1.0], "arm_classifier.epochs": 2, "arm_classifier.width": 8, "arm_classifier.min_steps": 1,
                     "arm_classifier.blocks": 2},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    paths = {k: str(tmp / v) for k, v in Params().paths.model_dump().items()}
    paths["raw"] = str(tmp / "raw")
    items = [f"paths.{k}={v}" for k, v in paths.items()]
    items += [f"{s}.{k}={_yaml(v)}" for s, kv in overrides.items() for k, v in kv.items()]
    return items


def _yaml(v) -> str:
    return "null" if v is None else str(v)


@pytest.fixture
def shapes(tmp_path) -> Path:
    """Imbalanced ImageFolder: 30 circles, 30 squares, 8 crosses."""
    return make_shapes(tmp_path / "raw", {"circle": 30, "square": 30, "cross": 8})


@pytest.fixture
def params(tmp_path, shapes) -> Params:
    return tiny_params(tmp_path)


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """ingest + train once per session; tests copy it (stages must not see each other's edits)."""
    from ganaug.pipeline.ingest import ingest
    from ganaug.pipeline.train import train

    root = tmp_path_factory.mktemp("trained")
    make_shapes(root / "raw", {"circle": 30, "square": 30, "cross": 8})
    p = tiny_params(root)
    ingest(p)
    train(p)
    return root


@pytest.fixture
def trained(tmp_path, trained_template) -> Params:
    """A private copy of the trained pipeline's folder, with params pointing into it."""
    dest = tmp_path / "work"
    shutil.copytree(trained_template, dest)
    return tiny_params(dest)


def sh(cwd: Path, *cmd: str) -> str:
    """Run git/dvc (dvc from this interpreter) and insist it worked."""
    if cmd[0] == "dvc":
        cmd = (sys.executable, "-m", "dvc", *cmd[1:])
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def host(tmp_path) -> Path:
    """A user's repo: train/ tracked by DVC, committed, with a local directory remote."""
    return make_host(tmp_path)


def make_host(tmp_path: Path, name: str = "host") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "ci@example.com")
    sh(repo, "git", "config", "user.name", "ci")
    sh(repo, "dvc", "init", "-q")
    make_shapes(repo / "train", {"circle": 6, "square": 6, "cross": 6}, seed=3)
    sh(repo, "dvc", "add", "-q", "train")
    sh(repo, "dvc", "remote", "add", "-d", "store", str(tmp_path / f"{name}-remote" if name != "host" else tmp_path / "remote"))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "training set v1")
    sh(repo, "dvc", "push", "-q")
    return repo


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session (it takes 15-30 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
