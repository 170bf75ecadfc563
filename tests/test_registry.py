"""The stage registry is the one description of a stage: what its code reads must be declared."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ganaug.pipeline.plumbing.params import Params
from ganaug.pipeline.stages import ALL

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


def imported_modules(stage) -> set[str]:
    """The pipeline modules a stage runs (its code deps, as dvc.yaml lists them)."""
    return {c.removeprefix("pipeline/").removesuffix(".py") for c in stage.code if c != "gan"}


def params_read(module: str) -> set[str]:
    """Every `params.<section>` or `params.<section>.<key>` the module's source reads."""
    reads = set()
    for node in ast.walk(ast.parse((PIPELINE / f"{module}.py").read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "params":
            reads.add(f"{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params":
            reads.add(node.attr)
    # Only params' sections count (not methods such as params.model_dump, which hands all of
    # them to train's own worker processes). A section read whole through an attribute chain
    # (params.train.x) is listed as its key too.
    reads = {r for r in reads if r.split(".")[0] in Params.model_fields}
    return {r for r in reads if not ("." not in r and any(o.startswith(r + ".") for o in reads)
                                     and _only_chained(module, r))}


def _only_chained(module: str, section: str) -> bool:
    """True when every `params.<section>` in the source is followed by `.key`."""
    tree = ast.parse((PIPELINE / f"{module}.py").read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params" \
                and node.attr == section and not isinstance(parents.get(node), ast.Attribute):
            return False
    return True


@pytest.mark.parametrize("name", list(ALL))
def test_every_param_a_stage_reads_is_declared(name):
    stage = ALL[name]
    paths = {p.key.split(".", 1)[1] for p in stage.reads + stage.writes if p.key.startswith("paths.")}
    undeclared = set()
    for mod in imported_modules(stage):
        for read in params_read(mod):
            section, _, key = read.partition(".")
            covered = (section in stage.params or read in stage.params
                       or (section == "paths" and key in paths)
                       # a section passed whole, of which the stage declares the keys it depends on
                       or (not key and any(p.startswith(section + ".") for p in stage.params)))
            if not covered:
                undeclared.add(f"{mod}.py reads params.{read}")
    assert not undeclared, f"stage {name}: {sorted(undeclared)}; declare them in pipeline/stages.py"


def test_code_deps_hold_every_module_a_stage_imports():
    """dvc.yaml re-runs a stage when any module it runs changes: its derived code deps hold what
    importing its module really loads (and train's checkpoints.py, which the hand-kept list of
    old missed, so that an edit there re-ran nothing). gan/hyper.py, the defaults params.py reads,
    is plumbing with params (codedeps.SHARED): every stage loads it."""
    import json
    import subprocess
    import sys

    script = """
import importlib, json, sys
from ganaug.pipeline.stages import ALL
loaded = {}
for name, stage in ALL.items():
    for m in [m for m in sys.modules if m.startswith("ganaug.pipeline.") or m.startswith("ganaug.gan")]:
        del sys.modules[m]
    importlib.import_module(stage.module)
    loaded[name] = sorted({"/".join(m.split(".")[2:]) for m in sys.modules
                           if m.startswith("ganaug.pipeline.") and not hasattr(sys.modules[m], "__path__")}
                          | ({"gan"} if any(m.startswith("ganaug.gan.") and m != "ganaug.gan.hyper"
                                          for m in sys.modules) else set()))
print(json.dumps(loaded))
"""
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                       check=True).stdout)
    from ganaug.pipeline.plumbing.codedeps import SHARED

    for name, modules in loaded.items():
        code = set(ALL[name].code)
        missing = [m for m in modules if m not in SHARED and (m if m == "gan" else f"pipeline/{m}.py") not in code]
        assert not missing, f"stage {name}: runs {missing}, not in its code deps"
    assert "pipeline/store/checkpoints.py" in ALL["train"].code and "gan" in ALL["generate"].code


def test_the_filter_tests_run_in_an_order_that_fills_classes():
    """A test judging an image against those kept before it ('set', the dedupe) must run last: a
    new test appended after it would throw away images it kept and under-fill their class."""
    from ganaug.pipeline import filter as f

    with pytest.raises(RuntimeError, match="out of order"):
        f._check_order((f.TESTS[-1], *f.TESTS[:-1]))
    assert f._check_order(f.TESTS) == f.TESTS
    # The module docstring and docs/architecture.md name the switchable tests in the order they run.
    architecture = (PIPELINE.parent / "docs" / "architecture.md").read_text()
    for text, name in ((f.__doc__, "filter.{}"), (architecture, "(`{}`)")):
        positions = [text.find(name.format(t.switch)) for t in f.TESTS if t.switch]
        assert -1 not in positions and positions == sorted(positions), (name, positions)
