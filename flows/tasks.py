"""Prefect tasks: one per stage, each a thin wrapper over the stage function the CLI calls.

Retries only where a failure can be transient (file systems, git, DVC remotes) and only
for errors that are not the user's input: a bad file or key fails at once, whatever
the retry count. No task caching: a stage's output depends on files, not on the task's
arguments, and DVC (not Prefect) is what knows when files changed.
"""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.errors import CheckpointError, DataError, ParamsError
from pipeline.params import Params
from pipeline.stages import STAGES, summarize

USER_ERRORS = (DataError, ParamsError, CheckpointError)


def _transient(task, task_run, state) -> bool:
    """Retry unless the failure is the user's input: that would fail the same way again."""
    try:
        state.result()
    except USER_ERRORS:
        return False
    except Exception:  # anything else (OSError, git/DVC hiccups) may pass on a second try
        return True
    return False


def _run(name: str, params: Params, **kwargs) -> dict:
    result = STAGES[name].load()(params, **kwargs)
    get_run_logger().info("%s: %s", name, summarize(name, result))
    return result


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_transient, cache_policy=NO_CACHE)
def ingest(params: Params) -> dict:
    return _run("ingest", params)


@task(retries=1, retry_delay_seconds=30, retry_condition_fn=_transient, cache_policy=NO_CACHE)
def train(params: Params) -> dict:
    """A retry resumes from the last checkpoint (train.resume), so it costs little."""
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


@task(cache_policy=NO_CACHE)
def generate(params: Params) -> dict:
    return _run("generate", params)


@task(cache_policy=NO_CACHE)
def filter_candidates(params: Params) -> dict:
    return _run("filter", params)


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_transient, cache_policy=NO_CACHE)
def append(params: Params) -> dict:
    """Idempotent (a batch id from its images), so a retry never appends twice."""
    return _run("append", params)


@task(cache_policy=NO_CACHE)
def evaluate(params: Params) -> dict:
    return _run("evaluate", params)
