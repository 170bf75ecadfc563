"""The stages in pipeline order, each with its whole contract: the one registry that dvc.yaml,
the CLI, the Prefect tasks and the path checks all derive from.

A stage declares the paths it reads and writes (as params keys), the params it reads, its
metrics, plots and pictures, its one-line summary and its retry policy; the code it runs (this
repository's dvc.yaml re-runs it when that changes) is derived from its imports
(pipeline/plumbing/codedeps.py). `run` is how every entry point
starts a stage: the guards (pipeline/plumbing/guards.py) check the outputs against every path
of the pipeline, for writability and the batches against the memory, then the stage function
(params in, files out) runs. This module is data: the entries and their types.

A new stage is one module (a `stage(params) -> dict` function and a `summarize(result)`)
plus one entry here. Stage modules are imported when a stage runs, not when the CLI starts:
torch, scikit-learn and matplotlib take seconds to import.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .judges import arms
from .plumbing import codedeps, guards
from .plumbing.params import Params, lookup


@dataclass(frozen=True)
class P:
    """One path a stage reads or writes: a params key (e.g. "paths.prepared"), optionally a
    file inside that folder. The key, not the value, is what DVC and the checks see."""

    key: str
    file: str = ""
    folder: bool = False        # written as a whole folder (built aside, renamed in)
    persist: bool = False       # DVC keeps it between runs (train resumes a checkpoint)
    cache: bool = True          # False: small reports, kept in git, not the DVC cache
    in_dvc: bool = True         # False: not a dvc.yaml path (append.target is tracked on its own)
    style: dict | None = field(default=None, compare=False, hash=False)  # dvc plots options

    def value(self, params: Params) -> str | None:
        node = lookup(params, self.key)
        return None if node is None else (f"{node}/{self.file}" if self.file else str(node))

    def dvc(self) -> str:
        return "${" + self.key + "}" + (f"/{self.file}" if self.file else "")

    def shown(self) -> str:
        return self.key + (f"/{self.file}" if self.file else "")


@dataclass(frozen=True)
class Parts:
    """Work that splits into independent parts (generate's shards, filter's classes), which the
    Prefect flow maps over Dask workers when `<section>.workers` > 1 or `<section>.dask_address`
    is set. The stage function takes `run_parts(params, parts, shared, folder, sampler)`, which
    returns the parts' results in order; `worker` ("module:function") runs one part in another
    process: worker(params, part, *shared, folder), loading the checkpoint itself."""

    section: str
    worker: str


@dataclass(frozen=True)
class Batch:
    """One batch a stage holds in a device's memory, for the guard against impossible batch sizes
    (guards.check_memory): `maps` feature maps of the network's width at the image's full size, float32,
    an image (training keeps every layer's for the backward pass; a forward pass, a layer or two)."""

    size: str      # params key of the batch size
    device: str    # params key of the device that runs it
    width: str     # params key of the network's width (channels)
    maps: int      # feature maps kept an image


GAN_TRAINING = Batch("train.batch_size", "train.device", "train.width", 18)  # G + D, 6 layers each, x 1.5
GAN_FORWARD = Batch("generate.batch_size", "train.device", "train.width", 2)
CLASSIFIER_TRAINING = Batch("evaluate.batch_size", "evaluate.device", "evaluate.width", 12)


@dataclass(frozen=True)
class Stage:
    name: str
    target: str                       # "module:function", params -> result dict
    help: str
    reads: tuple[P, ...] = ()
    outs: tuple[P, ...] = ()          # DVC-tracked outputs
    pictures: tuple[P, ...] = ()      # uncached images a user looks at
    metrics: tuple[P, ...] = ()
    plots: tuple[P, ...] = ()
    params: tuple[str, ...] = ()      # params sections or section.key it reads
    retries: int = 0                  # Prefect retries, of errors marked transient only
    retry_delay_s: int = 10
    # How the Prefect flow runs it, where that differs from a task in the flow's process:
    progress: str = ""                # a progress artifact of this key: the function takes
                                      # on_progress(step, total, row), its module has describe_progress
    remote: str = ""                  # params key naming a deployment to run it on, when set
    parts: Parts | None = None        # mapped over Dask workers
    memory: tuple[Batch, ...] = ()    # the batches it holds in memory (guards.check_memory)
    makes_raw: bool = False           # it writes the data paths.raw points into (the demo)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    @property
    def code(self) -> tuple[str, ...]:
        """The source it runs (its module's import closure, gan/ whole), for dvc.yaml's deps."""
        return codedeps.closure(self.module.rsplit(".", 1)[1])

    @property
    def writes(self) -> tuple[P, ...]:
        return self.outs + self.pictures + self.metrics + self.plots

    def function(self) -> Callable[..., dict]:
        return getattr(importlib.import_module(self.module), self.target.split(":")[1])

    def summarize(self, result: dict) -> str:
        return importlib.import_module(self.module).summarize(result)


def _p(key: str, file: str = "", **kw) -> P:
    return P(f"paths.{key}", file, **kw)


REPORT = dict(cache=False)
# train's validation judge and filter's class-agreement guard train the reference classifier
# with these of evaluate's settings (classifier.fit_reference).
REFERENCE_CLASSIFIER = ("evaluate.epochs", "evaluate.batch_size", "evaluate.lr", "evaluate.width")
DEMO_DATA = Stage(
    "demo-data", "ganaug.pipeline.demo_data:demo_data",
    "write the long-tailed digits demo dataset to paths.demo",
    outs=(_p("demo", folder=True),), params=("demo",), makes_raw=True)

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", "ganaug.pipeline.ingest:ingest", "validate, convert and split the images into a manifest",
          reads=(_p("raw"),), outs=(_p("prepared", folder=True),),
          metrics=(_p("reports", "ingest.json", **REPORT),), params=("ingest",), retries=2),
    Stage("train", "ganaug.pipeline.train:train", "train the conditional GAN; checkpoint, metrics, sample grid",
          reads=(_p("prepared"),), outs=(_p("model", persist=True),),
          pictures=(_p("train_reports", "samples.png", **REPORT), _p("train_reports", "losses.png", **REPORT)),
          metrics=(_p("train_reports", "metrics.json", **REPORT),),
          plots=(_p("train_reports", "losses.csv", **REPORT,
                    style={"x": "step", "y": ["loss_d", "loss_g", "d_real", "d_fake"]}),),
          params=("train", "ingest.channels", "ingest.size", *REFERENCE_CLASSIFIER),
          retries=1, retry_delay_s=30,  # a retry resumes from the last checkpoint
          progress="ganaug-training", remote="train.deployment", memory=(GAN_TRAINING,)),
    Stage("generate", "ganaug.pipeline.generate:generate", "generate scored candidates for the classes that need them",
          reads=(_p("prepared"), _p("model")), outs=(_p("candidates", folder=True),),
          params=("generate", "train.device", "ingest.channels", "ingest.size"),
          parts=Parts("generate", "ganaug.pipeline.generate:make_shard"), memory=(GAN_FORWARD,)),
    Stage("filter", "ganaug.pipeline.filter:filter_candidates",
          "keep candidates that look real, are their class, no copies and distinct; top up",
          reads=(_p("prepared"), _p("candidates"), _p("model")), outs=(_p("accepted", folder=True),),
          pictures=(_p("reports", "filter_scores.png", **REPORT), _p("reports", "accepted_samples.png", **REPORT),
                    _p("reports", "filter_rejected.png", **REPORT)),
          metrics=(_p("reports", "filter.json", **REPORT),),
          plots=(_p("reports", "filter_classes.csv", **REPORT,
                    style={"x": "label", "y": "acceptance_rate", "template": "bar_horizontal"}),),
          params=("filter", "generate", "ingest.channels", "ingest.size", "train.device", "evaluate.seed", "evaluate.augment",
                  *REFERENCE_CLASSIFIER),
          parts=Parts("filter", "ganaug.pipeline.filter:filter_class"), memory=(GAN_FORWARD, CLASSIFIER_TRAINING)),
    Stage("evaluate", "ganaug.pipeline.evaluate:evaluate",
          "the arms' classifiers (pipeline/judges/arms.py: real, oversampled, smote, synthetic); decide the gate",
          reads=(_p("prepared"), _p("accepted")),
          metrics=(_p("reports", "metrics.json", **REPORT), _p("reports", "gate.json", **REPORT)),
          pictures=(_p("reports", "evaluate_curves.png", **REPORT),),
          plots=(_p("reports", "per_class_recall.csv", **REPORT,
                    style={"x": "class", "y": list(arms.NAMES),
                           "template": "bar_horizontal"}),),
          params=("evaluate", "ingest.channels", "ingest.size", "generate.sampling_strategy", "filter.copy_quantile",
                  "append.fill", "append.target"),  # fill: how the synthetic arm's folder is filled
          memory=(CLASSIFIER_TRAINING,)),
    Stage("append", "ganaug.pipeline.append:append",
          "build the augmented training set (or append in place), as the gate allows",
          reads=(_p("prepared"), _p("accepted"), _p("reports", "gate.json")),
          outs=(_p("augmented", folder=True), P("append.target", folder=True, in_dvc=False)),
          # the plan's counts and the regime: what fills the set; evaluate's: what the gate was decided under
          params=("append", "filter", "generate.sampling_strategy", "evaluate", "ingest.channels",
                  "ingest.size"), retries=2),
)}
ALL = {DEMO_DATA.name: DEMO_DATA, **STAGES}


def run(name: str, params: Params, **kwargs) -> dict:
    """Every entry point's way to run a stage: check the paths and the memory a batch needs,
    then call the stage."""
    stage = ALL[name]
    guards.check_paths(stage, params, ALL.values())
    guards.check_memory(stage, params)
    return stage.function()(params, **kwargs)


def summarize(name: str, result: dict) -> str:
    """One line per stage result, for the CLI and the Prefect logs alike."""
    return ALL[name].summarize(result)


__all__ = ["ALL", "DEMO_DATA", "P", "Parts", "STAGES", "Stage", "run", "summarize"]
