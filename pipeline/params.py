"""The one typed params object: `params.yaml`, one section per stage plus `paths`.

Loaded with a YAML 1.2-number safe loader, overridden with `--set section.key=value`, validated with
pydantic. Any problem is a `ParamsError` that names the key and what is accepted.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ParamsError

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class _SafeLoader12(yaml.SafeLoader):
    """YAML 1.2 numbers, as DVC reads params.yaml: `1e-4` is a float (PyYAML's YAML 1.1 rules
    read it as the string "1e-4", which strict validation would then refuse)."""


_SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_SafeLoader12)


class Section(BaseModel):
    # strict: `steps: true` is not 1 step, `dedupe: 1` is not True, "3" is not 3.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Paths(Section):
    """Every file a stage reads or writes, relative to the working directory."""

    demo: str = "data/demo"                  # demo-data writes the demo dataset here
    raw: str = "data/demo/index.csv"         # the user's images: ImageFolder or a path,label table
    prepared: str = "data/prepared"          # ingest: images/, manifest.parquet
    model: str = "models/gan.pt"             # train: the checkpoint
    train_reports: str = "reports/train"     # train: metrics.json, losses.csv, grids
    candidates: str = "data/candidates"      # generate: images/, manifest.parquet
    accepted: str = "data/accepted"          # filter: images/, manifest.parquet
    augmented: str = "data/augmented"        # append: the augmented training set
    reports: str = "reports"                 # ingest/filter/evaluate reports and plots

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_names(cls, v):
        # `raw: 2024` in YAML is a folder named 2024, not a number.
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class Demo(Section):
    """`ganaug demo-data`: sklearn's digits as an imbalanced ImageFolder."""

    size: Literal[8, 16, 32] = 16
    rare_classes: list[int] = [3, 8]
    rare_fraction: Fraction = 0.1
    seed: int = 0


class Ingest(Section):
    channels: Literal[1, 3] = 1
    size: Literal[8, 16, 32, 64, 128] = 16
    resize: Literal["stretch", "pad", "crop"] = "stretch"
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.25
    # A class of fewer images gives n/full_split_from of the fractions (at least 1 test image):
    # the GAN keeps most of a rare class; the filter borrows what the class cannot give.
    full_split_from: int = Field(50, ge=1)
    min_per_class: int = Field(3, ge=3)        # 2 to train on, 1 to test with
    max_file_mb: float = Field(50.0, gt=0)
    max_pixels: int = Field(50_000_000, gt=0)  # decompression-bomb guard
    on_bad_file: Literal["quarantine", "fail"] = "quarantine"
    background: Literal["white", "black"] = "white"  # transparent pixels are composited onto this
    workers: int | None = Field(None, ge=1)  # decoding processes; null: one per CPU core
    seed: int = 0

    @model_validator(mode="after")
    def _splits_leave_room_for_train(self):
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1 (the rest is train)")
        return self


def _device(v: str) -> str:
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError("expected auto, cpu, cuda or cuda:N")


Device = Annotated[str, AfterValidator(_device)]  # auto (a GPU when there is one) | cpu | cuda | cuda:N


class Train(Section):
    steps: int = Field(1000, ge=1)
    minutes: float | None = Field(None, gt=0)  # wall-clock budget of one run; a re-run resumes
    patience: int | None = Field(None, ge=1)   # stop after this many evaluations without improvement
    fail_when_unhealthy: bool = False          # exit non-zero when D died or G collapsed
    batch_size: int = Field(64, ge=2)
    z_dim: int = Field(128, ge=1)
    width: int = Field(32, ge=4)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(8e-4, gt=0)            # 4x lr_g with two D steps (BigGAN); see docs/architecture.md
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    n_dis: int = Field(2, ge=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    diffaug: list[Literal["color", "translation", "cutout"]] = ["translation"]
    lecam: float = Field(0.0, ge=0)
    mode_seeking: float = Field(0.1, ge=0)     # MSGAN weight: keeps different z apart within a class
    gsr: float = Field(0.0, ge=0)              # group spectral regularization of G's class BatchNorms (gSR)
    # Transitional conditioning [start, end]: unconditional until step start, the class fading in
    # until step end (Shahbazi et al. 2022); null: conditional from the first step.
    transition: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=2, max_length=2)
    device: Device = "auto"
    compile: bool = False
    # Processes (one per device) under torchrun with DistributedDataParallel; batch_size is per
    # process, so N processes step on N x batch_size images. 1: no torchrun; null: one per
    # visible GPU (what a pod with gpu_count GPUs sees), one process on the CPU.
    nproc: int | None = Field(1, ge=1)
    loader_workers: int | None = Field(None, ge=0)  # batch-reading processes; null: 0 on the CPU, 4 on a GPU
    checkpoint_every: int = Field(250, ge=1)
    resume: bool = True
    seed: int = 0
    # Prefect: run training as this deployment ("flow-name/deployment-name", e.g. on a GPU
    # work pool) and wait for it; data travels through the DVC remote. None = in-process.
    deployment: str | None = None

    @model_validator(mode="after")
    def _transition_ends_after_it_starts(self):
        if self.transition is not None and self.transition[1] <= self.transition[0]:
            raise ValueError("transition must be [start, end] with end > start")
        return self


SamplingStrategy = Union[
    Literal["not majority", "minority", "not minority", "all"],
    Annotated[float, Field(gt=0.0, le=1.0)],
    dict[str, Annotated[int, Field(ge=0)]],
]


class Generate(Section):
    sampling_strategy: SamplingStrategy = "not majority"
    oversample: float = Field(1.5, ge=1.0)     # candidates per needed image, first round
    batch_size: int = Field(256, ge=1)
    shard_size: int = Field(10_000, ge=1)      # images per unit of work (rounded up to whole batches)
    # Prefect flow only: shards run as mapped tasks on Dask, on a LocalCluster of this many
    # worker processes, or on the cluster at dask_address. 1 and null: in the flow's process.
    workers: int = Field(1, ge=1)
    dask_address: str | None = None
    seed: int = 0

    @field_validator("sampling_strategy", mode="before")
    @classmethod
    def _class_names_are_strings(cls, v):
        # YAML reads `{3: 120}` with an int key; class names are always strings.
        return {str(k): n for k, n in v.items()} if isinstance(v, dict) else v


class Filter(Section):
    mode: Literal["quantile", "absolute", "none"] = "quantile"
    quantile: float = Field(0.1, ge=0.0, le=1.0)  # keep if scored >= this quantile of real val images
    threshold: float = 0.0                        # mode=absolute: keep if d_score >= threshold
    min_val_per_class: int = Field(10, ge=1)      # fewer val scores: borrow from the pooled val scores
    max_rounds: int = Field(4, ge=1)
    min_acceptance: float = Field(0.02, ge=0.0, lt=1.0)  # below this a class stops generating: hopeless
    reject_copies: bool = True                    # no near-copies of a real training image
    # A near copy: closer to a real training image of its class than all but this share of unseen
    # real images are, in units of the class's scale (pooled over classes; quality.copy_radii).
    copy_quantile: float = Field(0.05, ge=0.0, lt=1.0)
    require_agreement: bool = True                # a classifier trained on real images must agree on the class
    dedupe: bool = True                           # no near-duplicates among the accepted images
    # Prefect flow only: one class per mapped task on Dask, as generate.workers / dask_address.
    workers: int = Field(1, ge=1)
    dask_address: str | None = None


class Append(Section):
    link: Literal["hardlink", "copy"] = "hardlink"   # how real images enter the augmented set
    # Set to a DVC-tracked folder to append in place as a new data version (batch folder,
    # dvc add, git commit + tag, dvc push) instead of building paths.augmented.
    target: str | None = None
    lock_timeout_s: float = Field(600.0, ge=0)


class ClassicAugment(Section):
    """The classic augmentation (albumentations) of evaluate's arms under user_training=balanced,
    and of filter's class judge always: what users do anyway."""

    shift: float = Field(0.1, ge=0, lt=0.5)   # translate by up to this share of the size
    rotate: float = Field(10.0, ge=0, le=180)  # degrees
    scale: float = Field(0.1, ge=0, lt=1)     # zoom by up to +-this
    hflip: bool = False                        # only where a mirrored image keeps its class


class Evaluate(Section):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    width: int = Field(16, ge=4)
    repeats: int = Field(3, ge=1)            # classifier seeds averaged, to see past noise
    seed: int = 0
    augment: ClassicAugment = ClassicAugment()
    # Mixes tried: the most a class's training images may be synthetic; val picks one.
    synthetic_shares: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([0.5, 1.0], min_length=1)
    # How the user's own stage trains on the folder: plain (as it lands: shuffled, unweighted, no
    # augmentation) or balanced (class-balanced batches with `augment`). Every arm trains so.
    user_training: Literal["plain", "balanced"] = "plain"
    gate_metric: Literal["macro_f1", "balanced_accuracy", "rare_recall"] = "macro_f1"
    # Append synthetic images only when the lower end of the bootstrap interval of their gain over
    # the best other arm is above this; null turns the gate off (append whatever passed the filter).
    min_gain: float | None = 0.0
    bootstrap: int = Field(1000, ge=100)       # paired redraws of test images and seeds
    confidence: float = Field(0.9, gt=0, lt=1)  # of the central interval the gate reads the lower end of
    device: Device = "auto"                          # where the classifiers train
    loader_workers: int | None = Field(None, ge=0)   # batch-reading processes; null: 0 on the CPU, 4 on a GPU


class Params(Section):
    paths: Paths = Paths()
    demo: Demo = Demo()
    ingest: Ingest = Ingest()
    train: Train = Train()
    generate: Generate = Generate()
    filter: Filter = Filter()
    append: Append = Append()
    evaluate: Evaluate = Evaluate()


DEFAULT_FILE = "params.yaml"


def load_params(path: str | Path | None = DEFAULT_FILE, overrides: list[str] = ()) -> Params:
    """Read params, apply `section.key=value`. Only the default file (./params.yaml) may be
    absent (all defaults then); a file named on purpose must exist."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if path.exists() or str(path) != DEFAULT_FILE:
            data = _read_file(path)
    for item in overrides:
        _apply_override(data, item)
    for item in overrides:
        _apply_override(data, item)
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_explain(e, path)) from None


def _read_file(path: Path) -> dict:
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    if path.is_dir():
        raise ParamsError(f"{path}: is a folder; --params takes a YAML file such as params.yaml")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        data = parse_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _apply_override(data: dict, item: str):
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ParamsError(f"--set {item!r}: expected section.key=value, e.g. train.steps=100")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"--set {item!r}: {part} is not a section")
    try:
        node[parts[-1]] = parse_yaml(raw) if raw.strip() else raw
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(f"--set {item!r}: cannot parse {raw!r} as a value ({problem}); "
                          "quote a string that starts with a special character, e.g. key='@a'") from None


def _explain(e: ValidationError, path) -> str:
    lines = [f"invalid params{f' in {path}' if path else ''}:"]
    for err in e.errors():
        # Union members add their type names to loc; keep only the user's key path.
        key = ".".join(str(p) for p in err["loc"] if not _is_type_tag(p))
        if err["type"] == "extra_forbidden":
            parent = _section_of(err["loc"])
            lines.append(f"  {key}: unknown key; accepted keys: {', '.join(parent.model_fields)}")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(dict.fromkeys(lines))


def _is_type_tag(p) -> bool:
    return isinstance(p, str) and (p.startswith(("literal[", "dict[", "constrained-")) or p in ("float", "int", "str"))


def _section_of(loc) -> type[BaseModel]:
    model: type[BaseModel] = Params
    for p in loc[:-1]:
        field = model.model_fields.get(p) if isinstance(p, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return model


def to_dict(params: Params) -> dict:
    return params.model_dump(mode="json")
