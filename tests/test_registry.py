"""The stage registry is the one description of a stage: what its code reads must be declared."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ganaug.pipeline.params import Params
from ganaug.pipeline.stages import ALL

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
SHARED = {"params", "stages", "errors", "files", "paths", "cli", "dvcfile"}  # no stage's own reads


def imported_modules(module: str, seen: set[str] | None = None) -> set[str]:
    """The pipeline modules `module` runs: itself and what it imports from `.`, transitively."""
    seen = set() if seen is None else seen
    if module in seen or module in SHARED:
        return seen
    seen.add(module)
    tree = ast.parse((PIPELINE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            for name in names:
                if (PIPELINE / f"{name}.py").is_file():
                    imported_modules(name, seen)
    return seen


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
    module = stage.target.split(":")[0].rsplit(".", 1)[1]
    paths = {p.key.split(".", 1)[1] for p in stage.reads + stage.writes if p.key.startswith("paths.")}
    undeclared = set()
    for mod in imported_modules(module):
        for read in params_read(mod):
            section, _, key = read.partition(".")
            covered = (section in stage.params or read in stage.params
                       or (section == "paths" and key in paths)
                       # a section passed whole, of which the stage declares the keys it depends on
                       or (not key and any(p.startswith(section + ".") for p in stage.params)))
            if not covered:
                undeclared.add(f"{mod}.py reads params.{read}")
    assert not undeclared, f"stage {name}: {sorted(undeclared)}; declare them in pipeline/stages.py"
