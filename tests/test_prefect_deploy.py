"""The whole multi-node path on one machine: a real `prefect server`, a process work pool and
worker, prefect.yaml deployed, `augment` calling the train deployment with run_deployment.
The "GPU node" works in its own clone; data crosses only through the DVC remote."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from ganaug.pipeline.filter import ACCEPT_ALL
from ganaug.pipeline.store.manifest import read_manifest
from ganaug.pipeline.plumbing.params import as_overrides, load_params
from ganaug.pipeline.store.versioned import BATCHES_DIR
from tests.conftest import make_shapes, sh

REPO = Path(__file__).resolve().parents[1]
TINY = ["ingest.size=8", "train.steps=20", "train.width=8", "train.z_dim=16", "train.batch_size=16",
        "evaluate.epochs=1", "evaluate.repeats=1", "evaluate.width=8", "evaluate.arm_classifier.epochs=1",
            "evaluate.arm_classifier.width=8", "evaluate.arm_classifier.min_steps=1", *as_overrides({"filter": ACCEPT_ALL}), 'evaluate.min_gain=null', 'evaluate.synthetic_shares=[1.0]']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project_clone(dest: Path, remote: Path, raw: Path | None):
    """A git + DVC checkout of this project, configured with the shared remote."""
    dest.mkdir()
    for item in ("gan", "pipeline", "flows", "params.yaml", "dvc.yaml", "prefect.yaml", ".gitignore"):
        src = REPO / item
        shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() \
            else shutil.copy(src, dest / item)
    # No Docker daemon here: the gpu deployment's image build and push are left out (the
    # steps are checked against the Dockerfile in test_gpu_image_build_steps_are_complete).
    project = yaml.safe_load((dest / "prefect.yaml").read_text())
    for deployment in project["deployments"]:
        deployment.pop("build", None), deployment.pop("push", None)
        image = deployment.get("work_pool", {}).get("job_variables", {}).get("image")
        if image:
            deployment["work_pool"]["job_variables"]["image"] = "ganaug-gpu:test"
    (dest / "prefect.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if raw is not None:
        params["paths"]["raw"] = str(raw)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(dest, "git", "init", "-q")
    sh(dest, "dvc", "init", "-q")
    sh(dest, "dvc", "remote", "add", "-d", "store", str(remote))


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_augment_runs_training_on_a_deployment_through_the_dvc_remote(tmp_path, host):
    remote = tmp_path / "remote"  # the host fixture's remote: one store for every machine here
    raw = make_shapes(tmp_path / "raw", {"circle": 20, "square": 20, "cross": 6})
    parent, gpu = tmp_path / "parent", tmp_path / "gpu-node"
    _project_clone(parent, remote, raw)
    _project_clone(gpu, remote, raw=None)  # the GPU node never sees the raw images

    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2",
           "GANAUG_WORKDIR": str(gpu),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    prefect = [str(Path(sys.executable).with_name("prefect"))]
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen([*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT)
    worker = None
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, (logs / "server.log").read_text()[-3000:]
                time.sleep(1)

        def run(*cmd, cwd=parent):
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{cmd}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            return done.stdout + done.stderr

        for pool in ("local", "cpu", "gpu"):
            run(*prefect, "work-pool", "create", pool, "--type", "process")
        out = run(*prefect, "--no-prompt", "deploy", "--all", cwd=gpu)  # prefect.yaml, as a user would
        for name in ("ganaug-augment/nightly", "ganaug-train/gpu", "ganaug-train/local"):
            assert name in out
        nightly = json.loads(run(*prefect, "deployment", "inspect", "ganaug-augment/nightly", "--output", "json"))
        assert nightly["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
        worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "local", "--type", "process"],
                                  cwd=gpu, env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT)

        overrides = TINY + ["train.deployment=ganaug-train/local", f"append.target={host / 'train'}"]
        script = ("import json, sys; from ganaug.flows import augment_flow; "
                  "r = augment_flow('params.yaml', json.loads(sys.argv[1])); print('RESULT', json.dumps(r['append']))")
        out = run(sys.executable, "-c", script, json.dumps(overrides))
        appended = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])

        # The checkpoint was made on the GPU node and came back through the remote.
        assert (gpu / "models/gan.pt").is_file() and (parent / "models/gan.pt").is_file()
        assert (gpu / "models/gan.pt").read_bytes() == (parent / "models/gan.pt").read_bytes()
        # ... under the deployment's own overrides (prefect.yaml: train.minutes=60) and the run's:
        # Prefect replaces a deployment's parameters with a run's, so ganaug merges them.
        trained_under = torch.load(gpu / "models/gan.pt", weights_only=True)["extra"]["train_params"]
        assert trained_under["minutes"] == 60 and trained_under["steps"] == load_params(None, TINY).train.steps
        assert not (gpu / "data/candidates").exists()  # generating happened on the parent only
        for side in (parent, gpu):  # exchange snapshots are removed once they have travelled
            assert not any((side / ".ganaug" / "exchange").iterdir())
        assert appended["changed"] and appended["pushed"] is True
        assert sh(host, "git", "tag").split() == [appended["tag"]]
        batch = host / "train" / BATCHES_DIR / appended["batch"]
        assert len(read_manifest(batch, check_files=True)) == appended["images"] > 0

        # A fresh clone of the training-set repo pulls identical files.
        clone = tmp_path / "clone"
        sh(tmp_path, "git", "clone", "-q", str(host), str(clone))
        sh(clone, "dvc", "pull", "-q")
        assert _tree(clone / "train") == _tree(host / "train")

        # A second run adds nothing.
        head = sh(host, "git", "rev-parse", "HEAD")
        out = run(sys.executable, "-c", script, json.dumps(overrides))
        assert json.loads(out.split("RESULT ", 1)[1].splitlines()[0])["changed"] is False
        assert sh(host, "git", "rev-parse", "HEAD") == head
    finally:
        for proc in (worker, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_gpu_image_build_steps_are_complete():
    """What can be checked without a Docker daemon: the gpu deployment builds the Dockerfile
    beside its job template, pushes what it built and runs it; the image installs the torch
    version the README pins, from a CUDA index, and ganaug's three code folders."""
    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    gpu = next(d for d in project["deployments"] if d["name"] == "gpu")
    build = gpu["build"][0]["prefect_docker.deployments.steps.build_docker_image"]
    push = gpu["push"][0]["prefect_docker.deployments.steps.push_docker_image"]
    dockerfile = REPO / build["dockerfile"]
    assert dockerfile.is_file()
    assert push["image_name"] == "{{ build-image.image_name }}" and push["tag"] == "{{ build-image.tag }}"
    assert gpu["work_pool"]["job_variables"]["image"] == "{{ build-image.image }}"
    # one training process per GPU the pod gets (gpu_count), under torchrun
    assert "train.nproc=null" in gpu["parameters"]["overrides"]
    text = dockerfile.read_text()
    pin = re.search(r"torch==[0-9.]+", (REPO / "README.md").read_text()).group(0)
    assert f"pip install {pin} --index-url" in text and "download.pytorch.org/whl/cu" in text
    for folder in ("gan", "pipeline", "flows"):
        assert f"COPY {folder} {folder}" in text
    assert "pip install ." in text
