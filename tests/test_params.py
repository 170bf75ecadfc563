from pathlib import Path

import pytest

from ganaug.pipeline.plumbing.errors import ParamsError
from ganaug.pipeline.plumbing.params import Params, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_file_is_valid_and_complete():
    p = load_params(REPO / "params.yaml")
    assert isinstance(p, Params)
    import yaml
    written = yaml.safe_load((REPO / "params.yaml").read_text())
    # Every knob is in the file, so users see what they can turn.
    for section, fields in Params.model_fields.items():
        assert set(written[section]) == set(fields.annotation.model_fields), section


def test_overrides_are_typed_by_yaml():
    p = load_params(None, ["train.steps=12", "filter.quantile=0.5", "train.diffaug=[color]",
                           "evaluate.min_gain=null", "generate.sampling_strategy={3: 40, 8: 40}"])
    assert p.train.steps == 12 and p.filter.quantile == 0.5 and p.train.diffaug == ["color"]
    assert p.generate.sampling_strategy == {"3": 40, "8": 40}


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", r"train.stepz: unknown key; accepted keys: steps, minutes, patience"),
    ("trian.steps=3", r"trian: unknown key; accepted keys: paths, demo, ingest"),
    ("train.steps=-1", r"train.steps: Input should be greater than or equal to 1"),
    ("train.steps=many", r"train.steps: Input should be a valid integer"),
    ("filter.mode=best", r"filter.mode: Input should be 'quantile', 'absolute' or 'none'"),
    ("ingest.on_bad_file=skip", r"ingest.on_bad_file: Input should be 'quarantine' or 'fail'"),
    ("train.device=gpu", r"train.device: .*expected auto, cpu, cuda or cuda:N"),
    ("ingest.val_fraction=0.8", r"ingest: .*val_fraction \+ test_fraction must be < 1"),
    ("generate.sampling_strategy=majority", r"generate.sampling_strategy: Input should be 'not majority'"),
    ("train", r"expected section.key=value"),
])
def test_bad_params_name_the_key(override, message):
    with pytest.raises(ParamsError, match=message):
        load_params(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "mine.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("train:\n  lr_g: fast\n")
    with pytest.raises(ParamsError, match=f"in {bad}:\n  train.lr_g: Input should be a valid number"):
        load_params(bad)


def test_yaml_1_2_numbers_and_folder_names_that_look_like_numbers():
    """PyYAML reads `1e-4` as a string (YAML 1.1); DVC reads it as a float, and so must we,
    now that a string is no longer coerced into a number."""
    p = load_params(None, ["train.lr_d=1e-4", "train.minutes=2E+1", "paths.raw=2024"])
    assert p.train.lr_d == 1e-4 and p.train.minutes == 20.0 and p.paths.raw == "2024"


def test_each_knob_is_described_once_and_params_yaml_is_made_from_it():
    """A knob's docstring in pipeline/plumbing/params.py is its one description: params.yaml's comments and
    `ganaug params --explain` come from it, and the committed params.yaml is what it renders."""
    from ganaug.pipeline.plumbing.params import PARAMS_HEADER, explain, render_yaml

    repo = Path(__file__).resolve().parents[1]
    assert (repo / "params.yaml").read_text() == render_yaml(Params(), PARAMS_HEADER), \
        "params.yaml is stale: python -m ganaug.pipeline.plumbing.params"

    def knobs(model, prefix=""):
        for key, field in type(model).model_fields.items():
            value = getattr(model, key)
            yield from knobs(value, f"{prefix}{key}.") if hasattr(value, "model_fields") else [(prefix + key, field)]

    undescribed = [k for k, f in knobs(Params()) if not f.description]
    assert not undescribed, f"knobs without a description (a docstring under the field): {undescribed}"
    text = explain(load_params(None, ["train.steps=7"]))
    assert "train.steps = 7\n    G-steps" in text and "filter.dedupe = true\n    no near-duplicates" in text


def _numeric_knobs(model=Params, prefix=""):
    """Every int or float knob of the params, nested sections included, as dotted keys."""
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _numeric_knobs(kind, f"{prefix}{name}.")
            continue
        args = {a for a in typing.get_args(kind)} | {kind}
        bare = {typing.get_origin(a) or a for a in args} - {type(None), typing.Annotated}
        if bare & {int, float} and not bare & {str, list, dict, bool}:
            yield prefix + name


@pytest.mark.parametrize("key", list(_numeric_knobs()))
def test_every_numeric_knob_is_bounded(key):
    """Issue 28: no knob takes a value that allocates terabytes, overflows or never ends; an
    extreme value is one validation error naming the key, never a traceback later."""
    for extreme in ("1e308", str(10 ** 18), "-1e308"):
        with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
            load_params(None, [f"{key}={extreme}"])


def test_diffaug_names_are_the_augmentations_gan_has():
    """DiffAugment's names live in params' Literal (validated without importing torch) and in
    gan.diffaug's table: the two must be the same set."""
    import typing

    from ganaug.gan.diffaug import _AUGMENTS

    (item,) = typing.get_args(Params.model_fields["train"].annotation.model_fields["diffaug"].annotation)
    assert set(typing.get_args(item)) == set(_AUGMENTS)


def test_the_gan_defaults_are_written_once_and_every_knob_reaches_the_trainer():
    """params.Train's GAN knobs default to gan/hyper.py's values (written there only), and train
    hands every one of them to the trainer: a TrainHyper field that Train does not set is caught."""
    import dataclasses

    import torch

    from ganaug.gan import GANConfig, TrainHyper
    from ganaug.pipeline.plumbing.params import Train
    from ganaug.pipeline.train import _fresh_trainer

    fresh = _fresh_trainer(Train(), torch.zeros(1, 1, 16, 16), 3, torch.device("cpu"))
    assert fresh.hyper == TrainHyper()
    assert (fresh.cfg.z_dim, fresh.cfg.width, fresh.cfg.class_free_blocks) == \
        (GANConfig.z_dim, GANConfig.width, GANConfig.class_free_blocks)
    changed = Train(lr_g=1e-3, lr_d=2e-3, beta1=0.5, beta2=0.9, n_dis=3, ema_decay=0.99, diffaug=["color"],
                    lecam=0.2, mode_seeking=0.3, gsr=0.4, transition=[1, 5], ada_target=0.5, ada_kimg=50, ada_cap=0.7)
    hyper = _fresh_trainer(changed, torch.zeros(1, 1, 16, 16), 3, torch.device("cpu")).hyper
    for f in dataclasses.fields(TrainHyper):
        assert getattr(hyper, f.name) != getattr(TrainHyper(), f.name), f"train.{f.name} does not reach the trainer"
