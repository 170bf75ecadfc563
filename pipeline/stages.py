"""The stages in pipeline order: the one registry the CLI, dvc.yaml and the Prefect flows share."""
from __future__ import annotations

from collections.abc import Callable

from .append import append
from .demo_data import demo_data
from .evaluate import evaluate
from .filter import filter_candidates
from .generate import generate
from .ingest import ingest
from .params import Params
from .train import train

Stage = Callable[[Params], dict]

STAGES: dict[str, Stage] = {
    "ingest": ingest,
    "train": train,
    "generate": generate,
    "filter": filter_candidates,
    "append": append,
    "evaluate": evaluate,
}

__all__ = ["STAGES", "Stage", "demo_data"] + list(STAGES)
