"""Prefect flows: `augment` (the whole pipeline) and `train` (deployable on its own, e.g. to a
GPU work pool). Parameters are JSON-friendly: a params file and `section.key=value` overrides,
exactly what the CLI takes.

When train.deployment names a deployment, `augment` ships the prepared data through the DVC
remote, runs that deployment with `run_deployment` and waits; the train flow pulls the data,
trains, pushes the checkpoint and reports, and returns their `.dvc` texts; `augment` pulls
them and goes on. No shared filesystem is assumed, but the train flow's result must reach
the parent: use a result storage both sides can read (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK)
on more than one machine.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from ganaug.pipeline import exchange
from ganaug.pipeline.errors import GanaugError
from ganaug.pipeline.manifest import read_manifest
from ganaug.pipeline.params import Params, load_params
from ganaug.pipeline.stages import run, summarize

from ganaug.flows import tasks  # absolute: Prefect loads this file by path as a deployment entrypoint


@flow(name="ganaug-train", persist_result=True)
def train_flow(params_path: str = "params.yaml", overrides: list[str] | None = None,
               prepared_dvc: str | None = None, exchange_key: str | None = None) -> dict:
    """Train the GAN. With prepared_dvc (sent by `augment` on another machine), pull the data
    first and push the checkpoint after, returning its `.dvc` text."""
    params = load_params(params_path, overrides or [])
    if prepared_dvc is None:
        return {"metrics": tasks.train(params)}
    key = exchange_key or str(flow_run.get_id())
    exchange.receive(prepared_dvc, f"{key}-prepared", params.paths.prepared)
    metrics = tasks.train(params)
    return {
        "metrics": metrics,
        "model_dvc": exchange.send(params.paths.model, f"{key}-model"),
        "reports_dvc": exchange.send(params.paths.train_reports, f"{key}-reports"),
    }


@flow(name="ganaug-augment")
def augment_flow(params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """ingest -> train (here or on a deployment) -> generate -> filter -> evaluate -> append."""
    overrides = overrides or []
    params = load_params(params_path, overrides)
    log = get_run_logger()
    ingested = tasks.ingest(params)

    if params.train.deployment:
        key = str(flow_run.get_id())
        prepared_dvc = exchange.send(params.paths.prepared, f"{key}-prepared")
        log.info("train: running deployment %s", params.train.deployment)
        child = run_deployment(params.train.deployment, timeout=None, parameters={
            "params_path": params_path, "overrides": overrides,
            "prepared_dvc": prepared_dvc, "exchange_key": key})
        if not child.state.is_completed():
            raise GanaugError(f"training deployment {params.train.deployment} ended {child.state.name}: "
                              f"{child.state.message}")
        remote = child.state.result()
        exchange.receive(remote["model_dvc"], f"{key}-model", params.paths.model)
        exchange.receive(remote["reports_dvc"], f"{key}-reports", params.paths.train_reports)
        trained = remote["metrics"]
    else:
        trained = tasks.train(params)

    generated = generate(params)
    filtered = filter_candidates(params)
    evaluated = tasks.evaluate(params)   # decides the gate: a batch that does not help is not appended
    appended = tasks.append(params)

    create_table_artifact(key="ganaug-filter", description="filter: acceptance per class",
                          table=[{"class": k, **{c: x for c, x in v.items() if c != "rejected"},
                                  **{f"rejected_{r}": n for r, n in v["rejected"].items()}}
                                 for k, v in filtered["classes"].items()])
    create_markdown_artifact(key="ganaug-summary", description="ganaug augment run",
                             markdown=summary_markdown(params, ingested, trained, generated, filtered,
                                                       appended, evaluated))
    return {"ingest": ingested, "train": trained, "filter": filtered, "append": appended,
            "evaluate": {k: evaluated[k] for k in ("gate", "synthetic_quality")}}


@flow(name="ganaug-generate")
def generate_flow(params: Params) -> dict:
    """generate, its shards mapped over the task runner's workers (Dask; see `generate`)."""
    def on_workers(params, shards, label_map, folder, _sampler):  # workers load their own
        futures = tasks.generate_shard.map(unmapped(params), shards, unmapped(label_map), unmapped(str(folder)),
                                           unmapped(_threads(params.generate)))
        return [f.result() for f in futures]  # in shard order: the manifest is the single-process one

    result = run("generate", params, run_shards=on_workers)
    get_run_logger().info("generate: %s", summarize("generate", result))
    return result


@flow(name="ganaug-filter")
def filter_flow(params: Params) -> dict:
    """filter, one class per mapped task on the task runner's workers (Dask; see `generate`)."""
    def on_workers(params, jobs, label_map, judge, folder, _sampler):  # workers load their own
        futures = tasks.filter_class.map(unmapped(params), jobs, unmapped(label_map), unmapped(judge),
                                         unmapped(str(folder)), unmapped(_threads(params.filter)))
        return [f.result() for f in futures]  # in job order: the manifest is the single-process one

    result = run("filter", params, run_classes=on_workers)
    get_run_logger().info("filter: %s", summarize("filter", result))
    return result


def generate(params: Params) -> dict:
    """In this flow's process, or, with generate.workers > 1 or generate.dask_address, as a
    sub-flow on Dask (prefect-dask): a LocalCluster of that many processes, or that cluster.
    Workers write into the stage's temporary folder: a cluster needs the working folder on a
    filesystem every worker sees."""
    g = params.generate
    if g.workers == 1 and g.dask_address is None:
        return tasks.generate(params)
    return generate_flow.with_options(task_runner=_dask(g.workers, g.dask_address))(params)


def filter_candidates(params: Params) -> dict:
    """As `generate`, with filter.workers and filter.dask_address: a class per task."""
    f = params.filter
    if f.workers == 1 and f.dask_address is None:
        return tasks.filter_candidates(params)
    return filter_flow.with_options(task_runner=_dask(f.workers, f.dask_address))(params)


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


def summary_markdown(params, ingested, trained, generated, filtered, appended, evaluated) -> str:
    before = {k: v["train"] for k, v in ingested["classes"].items()}
    accepted = {k: c["accepted"] for k, c in filtered["classes"].items()}
    # In place: {class: images}; a built set: {class: {"real": n, "synthetic": m}}.
    added = {k: v.get("synthetic", 0) if isinstance(v, dict) else v for k, v in appended["per_class"].items()}
    lines = ["# ganaug augment run", "",
             "| class | real train | accepted synthetic | appended synthetic | acceptance rate |",
             "|---|---:|---:|---:|---:|"]
    for k, n in before.items():
        c = filtered["classes"].get(k, {})
        rate = "" if c.get("acceptance_rate") is None else f"{c['acceptance_rate']:.0%}"
        lines.append(f"| {k} | {n} | {accepted.get(k, 0)} | {added.get(k, 0)} | {rate} |")
    gate = evaluated["gate"]
    arms = [a for a in ("real_only", "real_oversampled", "smote", "synthetic") if a in evaluated]
    lines += ["", "| metric | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    for m in ("balanced_accuracy", "macro_f1", "rare_recall"):
        lines.append(f"| {m} | " + " | ".join(_with_interval(evaluated[a], m) for a in arms) + " |")
    per_class = gate.get("per_class_recall_gain") or {}
    if per_class:
        lines += ["", f"Recall gain per class against {gate['best_other_arm']} "
                      f"({gate['confidence']:.0%} interval, test images and seeds redrawn):", "",
                  "| class | real train | gain | interval |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {before.get(k, '')} | {g['gain']:+.3f} | [{g['interval'][0]:+.3f}, {g['interval'][1]:+.3f}] |"
                  for k, g in per_class.items()]
    health = trained["health"]
    lines += ["", f"**Gate {'passed' if gate['passed'] else 'closed'}**: {gate['reason']}.",
              f"GAN: {trained['steps_done']} steps on {trained['device']}, {trained['images_per_s']} img/s, "
              f"best step {trained['best_step']}; health: "
              + ("ok" if health["status"] == "ok" else "**UNHEALTHY**: " + "; ".join(health["problems"])),
              f"Filter: mode {filtered['mode']}, {filtered['accepted']}/{filtered['needed']} accepted."]
    if "batch" in appended:
        version = (f"commit `{appended['commit'][:10]}`, tag `{appended['tag']}`" if appended["commit"]
                   else "no change")
        pushed = {True: "pushed", False: f"push failed: {appended.get('push_error', '')}",
                  None: "no remote"}[appended["pushed"]]
        lines.append(f"Data version: batch `{appended['batch']}` in `{appended['target']}`: {version} ({pushed}).")
    else:
        n = len(read_manifest(Path(params.paths.augmented)))
        lines.append(f"Augmented set: `{params.paths.augmented}` ({n} images).")
    return "\n".join(lines) + "\n"


def _with_interval(arm: dict, metric: str) -> str:
    lo, hi = arm.get(f"{metric}_interval", (None, None))
    shown = f"{arm[metric]:.4f} ± {arm[metric + '_std']:.4f}"
    return shown + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
