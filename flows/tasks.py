"""Prefect tasks, built from the stage registry: one per stage, each calling the same
`stages.run` the CLI calls (paths checked, then the stage function), and one that runs a part
of a stage's work (stages.Parts) on a Dask worker.

Retries come from the registry (how many, how long apart) and happen only for errors marked
transient where they were raised (a git or DVC command that failed): a bad file, a wrong key,
a held lock or a NaN loss fails the same way again, so it fails at once. No task caching: a
stage's output depends on files, not on the task's arguments, and DVC (not Prefect) is what
knows when files changed. A stage that declares `progress` reports it as a progress artifact.
"""
from __future__ import annotations

import importlib

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from ganaug.pipeline.plumbing.params import Params
from ganaug.pipeline.stages import STAGES, Stage, run, summarize


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as e:
        return is_transient(e)
    return False


def _progress_reporter(stage: Stage, params: Params):
    """on_progress for the stage: about 20 artifact updates a run (every 5%), not one per step."""
    describe = importlib.import_module(stage.module).describe_progress
    artifact = create_progress_artifact(0.0, key=stage.progress, description=f"{stage.name}: {stage.help}")
    state = {"pct": 0.0, "row": {}}

    def report(step: int, total: int, row: dict):
        state["row"] |= row  # figures measured now and then (diversity) keep their last value
        pct = round(100.0 * step / total, 1)
        if pct - state["pct"] >= 5 or step == total:
            update_progress_artifact(artifact, pct, description=describe(step, total, state["row"]))
            state["pct"] = pct

    return report


def _stage_task(stage: Stage):
    def run_stage(params: Params, **kwargs) -> dict:
        if stage.progress:
            kwargs["on_progress"] = _progress_reporter(stage, params)
        result = run(stage.name, params, **kwargs)
        get_run_logger().info("%s: %s", stage.name, summarize(stage.name, result))
        return result

    run_stage.__doc__ = stage.help
    return task(run_stage, name=stage.name, retries=stage.retries, retry_delay_seconds=stage.retry_delay_s,
                retry_condition_fn=_retry_if_transient, cache_policy=NO_CACHE)


TASKS = {name: _stage_task(stage) for name, stage in STAGES.items()}


@task(cache_policy=NO_CACHE)
def run_part(worker: str, params: Params, part, shared: tuple, folder: str, threads: int):
    """One part of a stage's work (stages.Parts.worker), on whichever worker the task runner
    picks, with the torch thread count of the process that planned it: CPU kernels may round
    differently with another count, and the results are to be the single process's to the last bit."""
    import torch

    module, function = worker.split(":")
    torch.set_num_threads(threads)
    return getattr(importlib.import_module(module), function)(params, part, *shared, folder)
