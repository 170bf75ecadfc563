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

from ganaug.gan.hyper import GANConfig, TrainHyper

from .errors import ParamsError

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
# numpy's RandomState takes seeds below 2**32, and evaluate adds its repeats: headroom kept.
Seed = Annotated[int, Field(ge=0, lt=2**31)]


class _SafeLoader12(yaml.SafeLoader):
    """YAML 1.2 numbers, as DVC reads params.yaml: `1e-4` is a float (PyYAML's YAML 1.1 rules
    read it as the string "1e-4", which strict validation would then refuse)."""


def _mapping_without_duplicates(loader, node, deep=False):
    """DVC refuses a params.yaml with a key twice; so does ganaug (PyYAML would keep the last)."""
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_SafeLoader12.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              lambda loader, node: _mapping_without_duplicates(loader, node, deep=True))
_SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_SafeLoader12)


class Section(BaseModel):
    # strict: `steps: true` is not 1 step, `dedupe: 1` is not True, "3" is not 3.
    # A knob's docstring is its one description: `ganaug params --explain` prints it and
    # params.yaml's comments are made from it (render_yaml).
    # allow_inf_nan=False: `lr: .nan` is no learning rate (pydantic takes it by default).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True,
                              allow_inf_nan=False)


class Paths(Section):
    """Every file a stage reads or writes, relative to the working directory."""

    demo: str = "data/demo"
    """`ganaug demo-data` writes the demo dataset here"""
    raw: str = "data/demo/index.csv"
    """your images: ImageFolder (raw/<class>/*.png; raw/train/<class> beside raw/test/<class> gives your test set) or a path,label[,split] CSV/Parquet"""
    prepared: str = "data/prepared"
    """ingest -> pixels.u8 (every image, one array) + manifest.parquet"""
    model: str = "models/gan.pt"
    """train -> self-describing checkpoint"""
    train_reports: str = "reports/train"
    """train -> metrics.json, losses.csv/png, samples.png"""
    candidates: str = "data/candidates"
    """generate -> candidate images + scores"""
    accepted: str = "data/accepted"
    """filter -> images/<class>/*.png, pixels.u8, manifest.parquet"""
    augmented: str = "data/augmented"
    """append -> real train + accepted synthetic + manifest"""
    reports: str = "reports"
    """ingest/filter/evaluate reports and plots"""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_names(cls, v):
        # `raw: 2024` in YAML is a folder named 2024, not a number.
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @field_validator("*")
    @classmethod
    def _a_path(cls, v: str):
        if not v.strip() or "\x00" in v:
            raise ValueError("must be a path (not empty, no NUL character)")
        return v


class Demo(Section):
    """`ganaug demo-data`: sklearn's digits as an imbalanced ImageFolder."""

    size: Literal[8, 16, 32] = 16
    """pixels, square: the digits' 8 px upsampled"""
    rare_classes: list[int] = [3, 8]
    """digits cut down to rare_fraction of their images"""
    rare_fraction: Fraction = 0.1
    """share of each rare class's images kept"""
    seed: Seed = 0
    """which images the rare classes keep"""


class Ingest(Section):
    channels: Literal[1, 3] = 1
    """1 (grey) or 3 (RGB)"""
    size: Literal[8, 16, 32, 64, 128] = 16
    """pixels, square; 8..128, a power of two"""
    resize: Literal["stretch", "pad", "crop"] = "stretch"
    """stretch | pad | crop"""
    val_fraction: Fraction = 0.15
    """held-out real images: calibrate the filter"""
    test_fraction: Fraction = 0.25
    """held-out real images: evaluate"""
    full_split_from: int = Field(50, ge=1, le=100_000)
    """A class of fewer images gives n/full_split_from of the fractions (at least 1 test image): the GAN keeps
    most of a rare class; the filter borrows what the class cannot give."""
    min_per_class: int = Field(3, ge=3, le=100_000)
    """2 to train on, 1 to test with"""
    max_file_mb: float = Field(50.0, gt=0, le=4096)
    """a larger file is a bad file (quarantined or an error, as on_bad_file says)"""
    max_pixels: int = Field(50_000_000, gt=0, le=1_000_000_000)
    """decompression-bomb guard"""
    on_bad_file: Literal["quarantine", "fail"] = "quarantine"
    """quarantine (skip, list in reports/ingest.json) | fail"""
    background: Literal["white", "black"] = "white"
    """what transparent pixels become: white | black"""
    workers: int | None = Field(None, ge=1, le=1024)
    """decoding processes; null: one per CPU core"""
    seed: Seed = 0
    """the train/val/test split's draw"""

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


# The GAN's own defaults (gan/hyper.py, torch-free): written once, there; Train's fields read them.
GAN, HYPER = GANConfig, TrainHyper()


class Train(Section):
    steps: int = Field(1000, ge=1, le=100_000_000)
    """G-steps; a longer run resumes a shorter one's checkpoint"""
    minutes: float | None = Field(None, gt=0, le=100_000)
    """wall-clock budget of one run (e.g. 15); a re-run resumes"""
    patience: int | None = Field(None, ge=1, le=1_000_000)
    """stop after this many evaluations (every checkpoint_every steps) without improvement"""
    fail_when_unhealthy: bool = False
    """exit non-zero when D died or G collapsed (the report says so either way)"""
    batch_size: int = Field(64, ge=2, le=65_536)
    """real images a step (per process under torchrun)"""
    z_dim: int = Field(GAN.z_dim, ge=1, le=4096)
    """latent size"""
    width: int = Field(GAN.width, ge=4, le=2048)
    """channels of every G/D block"""
    lr_g: float = Field(HYPER.lr_g, gt=0, le=1)
    """G's Adam learning rate"""
    lr_d: float = Field(HYPER.lr_d, gt=0, le=1)
    """D's: 4x lr_g with 2 D-steps (BigGAN's TTUR; at 1:1 with 2 D-steps, D died: docs/architecture.md); the gpu
    preset: 1:1 with 4 D-steps (StudioGAN)"""
    beta1: float = Field(HYPER.betas[0], ge=0, lt=1)
    """Adam beta1 (0: the GAN default since SAGAN)"""
    beta2: float = Field(HYPER.betas[1], ge=0, lt=1)
    """Adam beta2"""
    n_dis: int = Field(HYPER.n_dis, ge=1, le=100)
    """D-steps per G-step"""
    ema_decay: float = Field(HYPER.ema_decay, ge=0, lt=1)
    """G_ema, the generator that samples: an exponential moving average of G's weights"""
    diffaug: list[Literal["color", "translation", "cutout"]] = list(HYPER.diffaug)
    """add color for RGB data; cutout, always on, starved D on 16-32 px images (with ADA it is applied as needed)"""
    lecam: float = Field(HYPER.lecam, ge=0, le=1000)
    """e.g. 0.3 for very small data"""
    mode_seeking: float = Field(HYPER.mode_seeking, ge=0, le=1000)
    """MSGAN weight: keeps different z apart within a class"""
    gsr: float = Field(HYPER.gsr, ge=0, le=1000)
    """gSR: spectral penalty on each class's BatchNorm gains (tail collapse)"""
    class_free_blocks: int = Field(GAN.class_free_blocks, ge=0, le=64)
    """G's first up-blocks see no class (UTLO, Khorram et al. 2024: the low resolutions learnt from every
    class, the class entering at the higher ones); fewer than G's up-blocks (2 at 16 px, 3 at 32)"""
    transition: list[Annotated[int, Field(ge=0, le=100_000_000)]] | None = Field(None, min_length=2, max_length=2)
    """Transitional conditioning [start, end]: unconditional until step start, the class fading in until step
    end (Shahbazi et al. 2022); null: conditional from the first step."""
    ada_target: float | None = Field(HYPER.ada_target, gt=0, lt=1)
    """ADA: apply each diffaug augmentation with a probability that adapts so that this share of real images gets a
    positive D logit (0.6 in StyleGAN2-ADA; for long runs of wide nets, where D memorizes); null: always augment"""
    ada_kimg: float = Field(HYPER.ada_kimg, gt=0, le=1_000_000)
    """ADA: thousands of real images over which its probability may move from 0 to 1"""
    ada_cap: float = Field(HYPER.ada_cap, ge=0, le=1)
    """ADA: its probability never above this"""
    device: Device = "auto"
    """auto | cpu | cuda | cuda:N"""
    compile: bool | None = None
    """torch.compile G and D; null: on CUDA with CUDA graphs (mode reduce-overhead), off on the CPU (minutes of
    compiling there); a compiler that fails falls back to eager (train's metrics.json says why)"""
    nproc: int | None = Field(1, ge=1, le=1024)
    """Processes (one per device) under torchrun with DistributedDataParallel; batch_size is per process, so N
    processes step on N x batch_size images. 1: no torchrun; null: one per visible GPU (what a pod with
    gpu_count GPUs sees), one process on the CPU."""
    loader_workers: int | None = Field(None, ge=0, le=256)
    """batch-reading processes; null: 0 on the CPU, 4 on a GPU"""
    checkpoint_every: int = Field(250, ge=1, le=100_000_000)
    """steps between checkpoints and validation (the best step is kept for generate)"""
    resume: bool = True
    """continue from the checkpoint at paths.model when data and settings match"""
    seed: Seed = 0
    """weights, latents and batches"""
    deployment: str | None = None
    """Prefect: run training as this deployment ("flow-name/deployment-name", e.g. on a GPU work pool) and wait
    for it; data travels through the DVC remote. None = in-process."""

    @model_validator(mode="after")
    def _transition_ends_after_it_starts(self):
        if self.transition is not None and self.transition[1] <= self.transition[0]:
            raise ValueError("transition must be [start, end] with end > start")
        return self


SamplingStrategy = Union[
    Literal["not majority", "minority", "not minority", "all"],
    Annotated[float, Field(gt=0.0, le=1.0)],
    dict[str, Annotated[int, Field(ge=0, le=100_000_000)]],
]


class Generate(Section):
    sampling_strategy: SamplingStrategy = "not majority"
    """imbalanced-learn: not majority | minority | not minority | all | {class: final count}"""
    oversample: float = Field(1.5, ge=1.0, le=1000)
    """candidates per needed image, first round"""
    batch_size: int = Field(256, ge=1, le=65_536)
    """images generated and scored at once"""
    shard_size: int = Field(10_000, ge=1, le=100_000_000)
    """images per unit of work (memory bound; rounded up to whole batches)"""
    workers: int = Field(1, ge=1, le=1024)
    """Prefect flow only: shards run as mapped tasks on Dask, on a LocalCluster of this many worker processes,
    or on the cluster at dask_address. 1 and null: in the flow's process."""
    dask_address: str | None = None
    """Prefect flow: an existing Dask scheduler instead of a LocalCluster"""
    seed: Seed = 0
    """the latents: candidate seeds start from it, per class"""
    png: bool = False
    """also write a PNG per candidate (images/<class>/<id>.png), to look at them one by one; the filter reads
    the one pixel array (pixels.u8) either way"""
    truncation: float | None = Field(None, ge=0.1, le=100)
    """latents truncated at +-this (entries beyond redrawn; BigGAN's trick): images nearer their class's typical
    one, fewer of another class, less varied; null: plain N(0, I)"""

    @field_validator("sampling_strategy", mode="before")
    @classmethod
    def _class_names_are_strings(cls, v):
        # YAML reads `{3: 120}` with an int key; class names are always strings.
        return {str(k): n for k, n in v.items()} if isinstance(v, dict) else v


class Filter(Section):
    mode: Literal["quantile", "absolute", "none"] = "quantile"
    """quantile (per class, vs held-out real) | absolute | none"""
    quantile: float = Field(0.1, ge=0.0, le=1.0)
    """keep if scored >= this quantile of real val images"""
    threshold: float = Field(0.0, ge=-1e12, le=1e12)
    """mode=absolute: keep if d_score >= threshold"""
    min_val_per_class: int = Field(10, ge=1, le=100_000)
    """a class with fewer val scores borrows from the pooled val quantile"""
    max_rounds: int = Field(4, ge=1, le=1000)
    """generate-and-filter rounds for a class still short of its target"""
    min_acceptance: float = Field(0.02, ge=0.0, lt=1.0)
    """a class accepting fewer stops generating (reported as hopeless)"""
    reject_copies: bool = True
    """no near copies of a real training image of the class"""
    copy_quantile: float = Field(0.05, ge=0.0, lt=1.0)
    """A near copy: closer to a real training image of its class than all but this share of unseen real images
    are, in units of the class's scale (pooled over classes; quality.copy_radii)."""
    require_agreement: bool = True
    """a classifier trained on the real images must agree on the class"""
    dedupe: bool = True
    """no near-duplicates among the accepted images"""
    workers: int = Field(1, ge=1, le=1024)
    """Prefect flow only: one class per mapped task on Dask, as generate.workers / dask_address."""
    dask_address: str | None = None
    """Prefect flow: an existing Dask scheduler instead of a LocalCluster"""


class Append(Section):
    link: Literal["hardlink", "copy"] = "hardlink"
    """hardlink | copy: how a duplicate (fill) of a real image's file is made in the augmented set"""
    target: str | None = None
    """Set to a DVC-tracked folder to append in place as a new data version (batch folder, dvc add, git commit
    + tag, dvc push) instead of building paths.augmented."""
    lock_timeout_s: float = Field(600.0, ge=0, le=604_800)
    """wait this long for another append to finish"""
    fill: Literal["best", "duplicates", "none"] = "best"
    """What brings a class of the augmented set to the plan's counts where synthetic images do not (the gate
    closed, or the filter accepted fewer). best: the folder evaluate found best lands (gate passed: synthetic,
    then duplicates of the class's real images, as evaluate's synthetic arm; closed: the best baseline's
    folder, over-sampled duplicates or SMOTE's images, or the real images alone); duplicates: always
    duplicates; none: no fill. Applies when the user's stage trains plainly (evaluate.user_training=plain) and
    to paths.augmented; in place, only synthetic images are added."""
    seed: Seed = 0
    """which real images fill duplicates, and SMOTE's draws"""


class ClassicAugment(Section):
    """The classic augmentation (albumentations) of evaluate's arms under user_training=balanced,
    and of filter's class judge always: what users do anyway."""

    shift: float = Field(0.1, ge=0, lt=0.5)
    """translate by up to this share of the size"""
    rotate: float = Field(10.0, ge=0, le=180)
    """degrees"""
    scale: float = Field(0.1, ge=0, lt=1)
    """zoom by up to +-this"""
    hflip: bool = False
    """only where a mirrored image keeps its class"""


class ArmClassifier(Section):
    """Each arm's classifier, trained as a user's own stage trains: passes over its own folder."""

    epochs: int = Field(15, ge=1, le=100_000)
    """passes over the arm's own folder: a folder of 2,400 images trains 4x the steps of one of 600"""
    min_steps: int = Field(300, ge=1, le=10_000_000)
    """a small folder still trains this many steps (users train a small set for more epochs; at 200 the tail
    benchmark's 554 real images had not converged)"""
    width: int = Field(16, ge=4, le=1024)
    """channels of its first BatchNorm block, doubling each block"""
    blocks: int = Field(3, ge=1, le=5)
    """BatchNorm blocks (two 3x3 convolutions, then 2x2 pooling): 3 at width 16 is ~75k parameters"""
    curve_points: int = Field(8, ge=2, le=1000)
    """learning-curve points on val per classifier (metrics.json, evaluate_curves.png): has it converged?"""


class Evaluate(Section):
    """runs before append and decides the gate"""

    epochs: int = Field(15, ge=1, le=100_000)
    """passes over the real train images of the yardstick classifier (train's validation judge, filter's class judge)"""
    batch_size: int = Field(64, ge=1, le=65_536)
    """classifier batch"""
    lr: float = Field(2e-3, gt=0, le=1)
    """classifier learning rate (Adam, one cycle)"""
    width: int = Field(16, ge=4, le=1024)
    """channels of the yardstick classifier (train's validation judge and filter's class judge)"""
    arm_classifier: ArmClassifier = ArmClassifier()
    """Each arm's classifier, trained as a user's own stage trains: passes over its own folder."""
    repeats: int = Field(3, ge=1, le=100)
    """classifier seeds averaged, to see past noise"""
    min_test_images: int = Field(5, ge=1, le=100_000)
    """a class with fewer test images gets no per-class verdict: reported undetermined (its recall a coin flip)"""
    measured_loss: float | None = Field(None, ge=0, le=1)
    """e.g. 0.01: when the overall gain is not sure and synthetic images go to undetermined classes (which the test
    split cannot measure), open the gate if on the classes it can measure the synthetic arm loses at most this (the
    lower end of its gain's interval there). Off (null, open only on a sure overall gain): measured on two
    benchmarks, it would not have opened where an independent judge found a gain, and nearly opened where it
    found a loss (docs/results.md)"""
    seed: Seed = 0
    """the first classifier seed; repeats add 1 each"""
    augment: ClassicAugment = ClassicAugment()
    """classic augmentation (albumentations): balanced arms; filter's class judge"""
    synthetic_shares: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([1.0], min_length=1)
    """Mixes tried: the most a class's training images may be synthetic; val picks one. Each costs a full set of
    fits, and val lacks the rare classes where the share matters most: one by default"""
    user_training: Literal["plain", "balanced"] = "plain"
    """How the user's own stage trains on the folder: plain (as it lands: shuffled, unweighted, no
    augmentation) or balanced (class-balanced batches with `augment`). Every arm trains so."""
    gate_metric: Literal["macro_f1", "balanced_accuracy", "rare_recall"] = "macro_f1"
    """macro_f1 | balanced_accuracy | rare_recall"""
    test_priors: Literal["balanced", "split"] = "balanced"
    """The class proportions every test figure assumes. balanced: as on a test set with as many images of each
    class (a rare class's false alarms weigh what they would there, not what ganaug's carve-out proportions
    make them); split: the test split as it is"""
    min_gain: float | None = Field(0.0, ge=-1, le=1)
    """Append synthetic images only when the lower end of the bootstrap interval of their gain over the best
    other arm is above this; null turns the gate off (append whatever passed the filter)."""
    bootstrap: int = Field(1000, ge=100, le=100_000)
    """paired redraws of test images and classifier seeds"""
    confidence: float = Field(0.9, gt=0, lt=1)
    """the gate opens on the lower end of this central interval"""
    device: Device = "auto"
    """where the classifiers train: auto (a GPU when there is one) | cpu | cuda | cuda:N"""
    loader_workers: int | None = Field(None, ge=0, le=256)
    """batch-reading processes; null: 0 on the CPU, 4 on a GPU"""


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


def render_yaml(params: Params, header: str) -> str:
    """params.yaml, each knob with its description as its comment: the one place a knob is
    described is its docstring here (a test keeps the committed params.yaml in step)."""
    def scalar(v) -> str:
        text = yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False).strip()
        return text.removesuffix("\n...").strip()

    def line(indent: str, text: str, comment: str | None) -> list[str]:
        if not comment:
            return [indent + text]
        if len(indent + text) < 34 and 34 + 2 + len(comment) <= 118:
            return [f"{indent + text:<34}# {comment}"]
        import textwrap
        return [f"{indent}# {c}" for c in textwrap.wrap(comment, 116 - len(indent))] + [indent + text]

    def section(model: BaseModel, indent: str) -> list[str]:
        out = []
        for key, field in type(model).model_fields.items():
            value = getattr(model, key)
            if isinstance(value, BaseModel):
                out += line(indent, f"{key}:", _summary(type(value))) + section(value, indent + "  ")
            else:
                out += line(indent, f"{key}: {scalar(value)}", field.description)
        return out

    lines = header.rstrip("\n").split("\n")
    for key in Params.model_fields:
        sub = getattr(params, key)
        lines += ["", *line("", f"{key}:", _summary(type(sub))), *section(sub, "  ")]
    return "\n".join(lines) + "\n"


def explain(params: Params) -> str:
    """Every knob, its value and what it does (`ganaug params --explain`)."""
    out = []

    def walk(model: BaseModel, prefix: str):
        for key, field in type(model).model_fields.items():
            value = getattr(model, key)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{key}.")
            else:
                shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")
                out.append(f"{prefix}{key} = {shown}\n    {field.description or ''}".rstrip())
    walk(params, "")
    return "\n".join(out) + "\n"


def _summary(cls: type) -> str | None:
    """A section's comment: its docstring's first sentence."""
    doc = (cls.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc and cls.__doc__ is not BaseModel.__doc__ else None


PARAMS_HEADER = """\
# ganaug: every knob, one section per stage. `ganaug params --explain` says what each does;
# `--set section.key=value` overrides any key on any command. Generated from pipeline/plumbing/params.py
# (python -m ganaug.pipeline.plumbing.params); the descriptions live there.
"""


def device(key: str, name: str):
    """The torch device `name` (the value of params key `key`), or a ParamsError naming the key
    when it is not there."""
    from ganaug.gan import pick_device

    try:
        return pick_device(name)
    except ValueError as e:
        raise ParamsError(f"{key}: {e}; use auto or cpu") from None


def loader_workers(setting: int | None, device) -> int:
    """train/evaluate.loader_workers on this device: null means none on the CPU (it is busy
    training, and a batch from the page cache costs microseconds), four feeding a GPU."""
    return setting if setting is not None else (0 if device.type == "cpu" else 4)


def compile_mode(setting: bool | None, device) -> bool | str:
    """train.compile on this device: null means CUDA graphs on CUDA (torch.compile's
    reduce-overhead mode) and eager on the CPU; true, the same mode on CUDA and inductor's default
    on the CPU (where there are no graphs)."""
    if setting is False or (setting is None and device.type != "cuda"):
        return False
    return "reduce-overhead" if device.type == "cuda" else True


def lookup(params: Params, key: str):
    """The value of a params key such as "train.batch_size"."""
    node = params
    for part in key.split("."):
        node = getattr(node, part)
    return node


PRESETS = Path(__file__).resolve().parents[1] / "presets"  # pipeline/presets


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset_overrides(name: str | None) -> list[str]:
    """A preset (pipeline/presets/NAME.yaml) as `--set` overrides: applied once, when params are
    written (`ganaug params --preset`, `ganaug init --preset`), then read from the file like any."""
    if name is None:
        return []
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        raise ParamsError(f"--preset {name}: no such preset (known: {', '.join(preset_names())})")
    return as_overrides(yaml.safe_load(path.read_text()))


def as_overrides(sections: dict[str, dict]) -> list[str]:
    """{"filter": {"dedupe": False}} -> ["filter.dedupe=false"]: what `--set` takes."""
    import json

    return [f"{section}.{k}={v if isinstance(v, str) else json.dumps(v)}"
            for section, values in sections.items() for k, v in values.items()]


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
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_explain(e, path)) from None


def _read_file(path: Path) -> dict:
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    if path.is_dir():
        raise ParamsError(f"{path}: is a folder; --params takes a YAML file such as params.yaml")
    if not path.is_file():  # a FIFO or a device would block or never end: never opened
        raise ParamsError(f"{path}: not a regular file; --params takes a YAML file such as params.yaml")
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
    if _is_text(parts):  # a path or a name: taken literally, as DVC takes a --set-param string
        node[parts[-1]] = None if raw.strip() in ("null", "~") and _optional(parts) else raw
        return
    try:
        node[parts[-1]] = parse_yaml(raw) if raw.strip() else raw
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(f"--set {item!r}: cannot parse {raw!r} as a value ({problem}); "
                          "quote a string that starts with a special character, e.g. key='@a'") from None


def _field(parts: list[str]):
    model: type[BaseModel] = Params
    for p in parts[:-1]:
        f = model.model_fields.get(p)
        if f is None or not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            return None
        model = f.annotation
    return model.model_fields.get(parts[-1])


def _is_text(parts: list[str]) -> bool:
    """A field that holds only text (a path, a deployment, an address): `a #1/b` is that text,
    where YAML would read a comment after `a` and quietly point at another folder."""
    f = _field(parts)
    return f is not None and f.annotation in (str, str | None)


def _optional(parts: list[str]) -> bool:
    f = _field(parts)
    return f is not None and f.annotation == (str | None)


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


if __name__ == "__main__":  # regenerate this repository's params.yaml (the defaults, described)
    Path(__file__).resolve().parents[2].joinpath(DEFAULT_FILE).write_text(render_yaml(Params(), PARAMS_HEADER))
