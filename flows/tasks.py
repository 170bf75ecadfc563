"""Prefect tasks: one per stage, built from the stage registry, each calling the same
`stages.run` the CLI calls (paths checked, then the stage function).

Retries come from the registry (how many, how long apart) and happen only for errors marked
transient where they were raised (a git or DVC command that failed): a bad file, a wrong key,
a held lock or a NaN loss fails the same way again, so it fails at once. No task caching: a
stage's output depends on files, not on the task's arguments, and DVC (not Prefect) is what
knows when files changed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from ganaug.pipeline.params import Params
from ganaug.pipeline.stages import STAGES, run, summarize

if TYPE_CHECKING:  # the stage modules import torch: not at flow import time
    from ganaug.pipeline.filter import ClassJob, ClassResult
    from ganaug.pipeline.generate import Shard


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as e:
        return is_transient(e)
    return False


def _run(name: str, params: Params, **kwargs) -> dict:
    result = run(name, params, **kwargs)
    get_run_logger().info("%s: %s", name, summarize(name, result))
    return result


def _stage_task(name: str):
    stage = STAGES[name]
    return task(name=name, retries=stage.retries, retry_delay_seconds=stage.retry_delay_s,
                retry_condition_fn=_retry_if_transient, cache_policy=NO_CACHE)


@_stage_task("ingest")
def ingest(params: Params) -> dict:
    return _run("ingest", params)


@_stage_task("train")
def train(params: Params) -> dict:
    """Reports progress as a Prefect artifact; a retry resumes from the last checkpoint."""
    artifact = create_progress_artifact(0.0, key="ganaug-training",
                                        description=f"GAN training, {params.train.steps} steps")
    last, last_diversity = [0.0], [float("nan")]

    def report(step: int, total: int, row: dict):
        pct = round(100.0 * step / total, 1)
        if "diversity_min" in row:
            last_diversity[0] = row["diversity_min"]
        if pct - last[0] >= 5 or step == total:  # ~20 updates a run, not one per step
            update_progress_artifact(artifact, pct, description=(
                f"step {step}/{total}: D {row['loss_d']:.3f}, G {row['loss_g']:.3f}, "
                f"D margin {row['margin']:.3f} (dead below 0.05), "
                f"worst-class diversity {last_diversity[0]:.2f} of real (collapse below 0.3)"))
            last[0] = pct

    return _run("train", params, on_progress=report)


@_stage_task("generate")
def generate(params: Params) -> dict:
    return _run("generate", params)


@task(cache_policy=NO_CACHE)
def generate_shard(params: Params, shard: Shard, label_map: dict[str, int], folder: str, threads: int):
    """One shard of generate's plan, on whichever worker the task runner picks, with the torch
    thread count of the process that planned it: CPU kernels may round differently with
    another count, and the scores are to be the single process's to the last bit."""
    import torch

    from ganaug.pipeline.generate import make_shard

    torch.set_num_threads(threads)
    return make_shard(params, shard, label_map, folder)


@_stage_task("filter")
def filter_candidates(params: Params) -> dict:
    return _run("filter", params)


@task(cache_policy=NO_CACHE)
def filter_class(params: Params, job: ClassJob, label_map: dict[str, int], judge, folder: str,
                 threads: int) -> ClassResult:
    """One class of filter's plan (all its rounds), on whichever worker the task runner picks,
    with the planning process's torch thread count (as generate_shard)."""
    import torch

    from ganaug.pipeline.filter import filter_class as run_class

    torch.set_num_threads(threads)
    return run_class(params, job, label_map, judge, folder)


@_stage_task("evaluate")
def evaluate(params: Params) -> dict:
    return _run("evaluate", params)


@_stage_task("append")
def append(params: Params) -> dict:
    """Idempotent (a batch id from its images), so a retry never appends twice."""
    return _run("append", params)
