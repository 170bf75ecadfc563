"""Prefect flows: `augment` (the whole pipeline) and `train` (deployable on its own, e.g. to a
GPU work pool). Parameters are JSON-friendly: a params file and `section.key=value` overrides,
exactly what the CLI takes.

The augment flow is the stage registry (pipeline/stages.py), run in order. When train.deployment
names a deployment (the registry's `remote`), `augment` ships train's inputs through the DVC
remote, runs that deployment with `run_deployment` and waits; the train flow pulls them,
trains, pushes what it wrote (checkpoint, reports), and returns their `.dvc` texts; `augment`
pulls them and goes on. No shared filesystem is assumed, but the train flow's result must reach
the parent: use a result storage both sides can read (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK)
on more than one machine.
"""
from __future__ import annotations

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from ganaug.pipeline.plumbing import run_summary
from ganaug.pipeline.store import exchange
from ganaug.pipeline.plumbing.errors import GanaugError
from ganaug.pipeline.plumbing.params import Params, load_params
from ganaug.pipeline.stages import STAGES, P, Stage, run, summarize

from ganaug.flows import tasks  # absolute: Prefect loads this file by path as a deployment entrypoint


@flow(name="ganaug-train", persist_result=True)
def train_flow(params_path: str = "params.yaml", overrides: list[str] | None = None,
               inputs: dict[str, str] | None = None, exchange_key: str | None = None) -> dict:
    """Train the GAN, deployable on its own (e.g. to a GPU work pool: the registry's `remote`).
    With inputs (sent by `augment` on another machine), pull them first and push the outputs
    after, returning their `.dvc` texts."""
    return _stage_here("train", params_path, overrides or [], inputs, exchange_key)


def _stage_here(name: str, params_path: str, overrides: list[str], inputs: dict[str, str] | None,
                exchange_key: str | None) -> dict:
    params = load_params(params_path, overrides)
    stage = STAGES[name]
    if inputs is None:
        return {"result": tasks.TASKS[name](params)}
    key = exchange_key or str(flow_run.get_id())
    for path_key, dvc_text in inputs.items():
        exchange.receive(dvc_text, f"{key}-{_slot(path_key)}", _value(params, path_key))
    result = tasks.TASKS[name](params)
    return {"result": result, "outputs": {k: exchange.send(_value(params, k), f"{key}-{_slot(k)}")
                                          for k in _keys(stage.writes)}}


@flow(name="ganaug-augment")
def augment_flow(params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Every stage of the registry in order (ingest -> train -> generate -> filter -> evaluate ->
    append; evaluate decides the gate append acts on), each where it declares it runs: a task
    here, a deployment (`remote`) or mapped over Dask workers (`parts`)."""
    overrides = overrides or []
    params = load_params(params_path, overrides)
    results = {name: run_stage(name, params, params_path, overrides) for name in STAGES}

    from ganaug.pipeline.filter import class_table  # the stage's module: imported as the stages are, late

    create_table_artifact(key="ganaug-filter", description="filter: acceptance per class",
                          table=class_table(results["filter"]))
    create_markdown_artifact(key="ganaug-summary", description="ganaug augment run",
                             markdown=run_summary.markdown(params, results))
    return results


def run_stage(name: str, params: Params, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """One stage as the flow runs it: on the deployment its `remote` key names, mapped over Dask
    workers when its `parts` section asks for them, else a task in this flow's process."""
    stage = STAGES[name]
    deployment = _value(params, stage.remote) if stage.remote else None
    if deployment:
        return _on_deployment(stage, deployment, params, params_path, overrides or [])
    if stage.parts:
        section = getattr(params, stage.parts.section)
        if section.workers > 1 or section.dask_address is not None:
            return parts_flow.with_options(name=f"ganaug-{name}",
                                           task_runner=_dask(section.workers, section.dask_address))(name, params)
    return tasks.TASKS[name](params)


def _on_deployment(stage: Stage, deployment: str, params: Params, params_path: str, overrides: list[str]) -> dict:
    """Ship the stage's inputs through the DVC remote, run the deployment and wait, then pull
    what it made. No shared filesystem is assumed."""
    key = str(flow_run.get_id())
    inputs = {k: exchange.send(_value(params, k), f"{key}-{_slot(k)}") for k in _keys(stage.reads)}
    own = _deployment_overrides(deployment)
    get_run_logger().info("%s: running deployment %s (its overrides %s, then this run's)", stage.name, deployment, own)
    child = run_deployment(deployment, timeout=None, parameters={
        "params_path": params_path, "overrides": own + overrides, "inputs": inputs, "exchange_key": key})
    if not child.state.is_completed():
        raise GanaugError(f"{stage.name} deployment {deployment} ended {child.state.name}: {child.state.message}")
    remote = child.state.result()
    for k, dvc_text in remote["outputs"].items():
        if k not in _keys(stage.writes):
            raise GanaugError(f"{stage.name} deployment {deployment} sent {k!r}, which the stage does not write")
        exchange.receive(dvc_text, f"{key}-{_slot(k)}", _value(params, k))
    return remote["result"]


def _deployment_overrides(name: str) -> list[str]:
    """The deployment's own `overrides` parameter. A run's parameters replace a deployment's key
    by key, so passing this run's overrides alone would drop the deployment's (the gpu one's
    train.device=cuda): the child gets the deployment's first, then this run's, which win where
    both set a key. Read from the server, so checked: a list of strings or nothing."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        own = (client.read_deployment_by_name(name).parameters or {}).get("overrides") or []
    if not (isinstance(own, list) and all(isinstance(o, str) for o in own)):
        raise GanaugError(f"deployment {name}: its overrides parameter must be a list of SECTION.KEY=VALUE "
                          f"strings, got {own!r}")
    return own


@flow(name="ganaug-parts")
def parts_flow(name: str, params: Params) -> dict:
    """A stage whose parts (stages.Parts: generate's shards, filter's classes) are mapped over
    the task runner's workers; each worker loads the checkpoint itself. Workers write into the
    stage's temporary folder: a cluster needs the working folder on a filesystem every worker sees."""
    parts = STAGES[name].parts
    section = getattr(params, parts.section)

    def on_workers(params, items, shared, folder, _sampler):
        futures = tasks.run_part.with_options(name=f"{name}-part").map(
            unmapped(parts.worker), unmapped(params), items, unmapped(shared), unmapped(str(folder)),
            unmapped(_threads(section)))
        return [f.result() for f in futures]  # in plan order: the manifest is the single-process one

    result = run(name, params, run_parts=on_workers)
    get_run_logger().info("%s: %s", name, summarize(name, result))
    return result


def _keys(declared) -> list[str]:
    """The params keys of a stage's DVC paths, once each (a folder and a file in it are one)."""
    return list(dict.fromkeys(p.key for p in declared if p.in_dvc))


def _value(params: Params, key: str):
    return P(key).value(params)


def _slot(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _dask(workers: int, address: str | None):
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address) if address else DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None})


def _threads(section) -> int:
    """Torch threads per worker. A LocalCluster shares this machine: its cores split between
    the workers (the flow's count each would oversubscribe them, and spinning threads made a
    2-worker filter 6x slower on 2 cores). A cluster elsewhere: this process's count. Results
    are bit for bit those of one process with that many threads; CPU kernels split their
    reductions by thread, so another count may change a score's last bit."""
    import torch

    if section.dask_address:
        return torch.get_num_threads()
    return max(1, torch.get_num_threads() // section.workers)


