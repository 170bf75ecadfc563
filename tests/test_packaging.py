"""The wheel installs one import package, `ganaug`, and nothing with a generic top-level name."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_from_python_m_build_imports_as_ganaug_in_a_fresh_venv(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in tracked.split():
        if rel.split("/")[0] in ("gan", "pipeline", "flows") or rel in ("pyproject.toml", "README.md"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    # --no-isolation: the build backend (setuptools) is already here; no download.
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                    str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("ganaug-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ganaug"}, f"the wheel claims top-level names {sorted(top)}"
    assert "ganaug/flows/deploy/k8s-gpu-job-template.json" in names

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # Dependencies from this environment's site-packages via PYTHONPATH (which, unlike a .pth,
    # does not run this checkout's editable-install hook): only the wheel provides ganaug.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    probe = ("import ganaug, ganaug.gan, ganaug.pipeline.plumbing.params, ganaug.pipeline.stages; "
             "import importlib.util as u; "
             "assert all(u.find_spec(n) is None for n in ('gan', 'pipeline', 'flows')), 'generic name importable'; "
             "print(ganaug.pipeline.plumbing.params.__file__)")
    out = subprocess.run([py, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert str(env_dir) in out.stdout, f"ganaug came from {out.stdout.strip()}, not the wheel"
    cli = subprocess.run([env_dir / "bin" / "ganaug", "params", "--set", "train.steps=7"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "steps: 7" in cli.stdout
