"""The Prefect flows on a real (temporary) Prefect server, appending to a real DVC repo."""
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

from ganaug.flows import augment_flow
from ganaug.pipeline.store.manifest import read_manifest
from ganaug.pipeline.stages import STAGES
from ganaug.pipeline.store.versioned import BATCHES_DIR
from tests.conftest import make_shapes, sh, tiny_overrides, tiny_params


def _artifacts(key: str):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_augment_flow_appends_a_new_version_with_artifacts(prefect_server, tmp_path, host):
    make_shapes(tmp_path / "raw", {"circle": 20, "square": 20, "cross": 6})
    (tmp_path / "params.yaml").write_text("")
    overrides = tiny_overrides(tmp_path, filter={"mode": "none"}, append={"target": str(host / "train")})
    result = augment_flow(str(tmp_path / "params.yaml"), overrides)
    assert list(result) == list(STAGES)  # the flow is the registry: every stage, in order

    appended = result["append"]
    assert appended["changed"] and appended["pushed"] is True
    batch = read_manifest(host / "train" / BATCHES_DIR / appended["batch"], check_files=True)
    assert len(batch) == appended["images"] == result["filter"]["accepted"] > 0
    assert sh(host, "git", "log", "-1", "--format=%s").startswith(f"ganaug: append batch {appended['batch']}")

    summary = _artifacts("ganaug-summary")[0].data
    assert "| cross |" in summary and f"batch `{appended['batch']}`" in summary and "(pushed)" in summary
    table = _artifacts("ganaug-filter")[0].data
    assert "cross" in table
    assert [a.data for a in _artifacts("ganaug-training")][0] == 100.0

    # Run again: the same batch, nothing new in the repository.
    head = sh(host, "git", "rev-parse", "HEAD")
    again = augment_flow(str(tmp_path / "params.yaml"), overrides)
    assert not again["append"]["changed"] and sh(host, "git", "rev-parse", "HEAD") == head


def test_bad_input_fails_at_once_without_retries(prefect_server, tmp_path):
    (tmp_path / "params.yaml").write_text("")
    state = augment_flow(str(tmp_path / "params.yaml"), tiny_overrides(tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="input not found"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    ingest_runs = [r for r in runs if r.name.startswith("ingest")]
    assert len(ingest_runs) == 1 and ingest_runs[0].run_count == 1  # a DataError is not retried


def test_generate_and_filter_spread_over_a_two_worker_dask_cluster_equal_one_process(prefect_server, trained,
                                                                                    tmp_path):
    """Prefect flow runs on 2-worker Dask LocalClusters: generate's shards (class, seed range) and
    filter's classes (every round, with the guards on) run as mapped tasks in other processes,
    bit for bit as in one process: the candidates as with a worker's thread count (half this
    one's: the cluster shares the machine; with another, a score's last bit may differ); the
    accepted images and the report as the stage's own run (its judge and thresholds come from
    the flow's process in both)."""
    import hashlib
    import json
    from contextlib import contextmanager

    import torch

    from ganaug.flows.augment import run_stage
    from ganaug.pipeline.filter import filter_candidates as filter_here
    from ganaug.pipeline.generate import generate as generate_here

    root = Path(trained.paths.raw).parent
    # Several shards per class, and two classes to fill (one worker each in the filter).
    small = {"batch_size": 8, "shard_size": 16, "sampling_strategy": {"cross": 20, "square": 40}}
    one = tiny_params(root, generate=small, paths={"candidates": str(tmp_path / "one")})
    spread = tiny_params(root, generate={**small, "workers": 2}, paths={"candidates": str(tmp_path / "two")})
    @contextmanager
    def workers_threads():
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // 2))
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    with workers_threads():
        here = generate_here(one)
    there = run_stage("generate", spread)
    assert there["shards"] == here["shards"] > 1 and there["candidates"] == here["candidates"]

    def tree(folder: Path) -> dict:
        return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}
    assert tree(tmp_path / "one") == tree(tmp_path / "two")

    # No score threshold: a 30-step GAN scores badly, and the guards are what runs on the workers.
    guards = {"mode": "none", "require_agreement": True, "reject_copies": True, "dedupe": True, "max_rounds": 3}
    outputs = {name: {"candidates": str(tmp_path / name), "accepted": str(tmp_path / f"{name}-accepted"),
                      "reports": str(tmp_path / f"{name}-reports")} for name in ("one", "two")}
    here = filter_here(tiny_params(root, generate=small, filter=guards, paths=outputs["one"]))
    there = run_stage("filter", tiny_params(root, generate=small, filter={**guards, "workers": 2}, paths=outputs["two"]))
    assert here == there and here["accepted"] > 0
    assert any(c["rounds"] > 1 for c in here["classes"].values())  # workers generated top-ups themselves
    assert tree(tmp_path / "one-accepted") == tree(tmp_path / "two-accepted")
    assert json.loads((tmp_path / "one-reports" / "filter.json").read_text()) == \
        json.loads((tmp_path / "two-reports" / "filter.json").read_text())
