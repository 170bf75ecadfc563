"""The source a stage runs, derived from its imports: what this repository's dvc.yaml lists as a
stage's code deps, so that editing any module a stage runs re-runs it under `dvc repro`.

Hand-kept lists went stale (train, generate, filter, evaluate and append each ran modules theirs
omitted, and `dvc repro` called stale outputs up to date); an import graph cannot forget one.
Every import counts, the ones inside functions too (stage modules import torch lazily). `gan/`
is one dep: the pure GAN package, whole.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository (the package's source root)
PIPELINE = ROOT / "pipeline"
# The plumbing every stage shares (params, the registry, the CLI, errors, path checks; and
# gan/hyper.py, the GAN's defaults params reads): an edit there is an edit to every stage, and
# `dvc repro --force` is the way to say so. Listing them would re-run six stages for a help text.
SHARED = frozenset({"params", "stages", "errors", "paths", "cli", "dvcfile", "codedeps"})


@cache
def _imports(module: str) -> tuple[frozenset[str], bool]:
    """(pipeline modules `module` imports directly, whether it imports the gan package)."""
    tree = ast.parse((PIPELINE / f"{module}.py").read_text())
    found, gan = set(), False
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:                       # from .x import y / from . import x, y
                names = [base] if base else [a.name for a in node.names]
            elif node.level == 2 or base == "ganaug" or base.startswith("ganaug."):
                full = base if node.level == 0 else f"ganaug.{base}".rstrip(".")
                gan |= full == "ganaug.gan" or full.startswith("ganaug.gan.") or (
                    full == "ganaug" and any(a.name == "gan" for a in node.names))
                if full == "ganaug.pipeline":
                    names = [a.name for a in node.names]
                elif full.startswith("ganaug.pipeline."):
                    names = [full.split(".")[2]]
        elif isinstance(node, ast.Import):
            for a in node.names:
                gan |= a.name == "ganaug.gan" or a.name.startswith("ganaug.gan.")
                if a.name.startswith("ganaug.pipeline."):
                    names.append(a.name.split(".")[2])
        found |= {n for n in names if (PIPELINE / f"{n}.py").is_file()}
    return frozenset(found), gan


def closure(module: str) -> tuple[str, ...]:
    """The code deps of a stage whose function lives in pipeline/<module>.py: "gan" (when it
    runs the GAN) and every pipeline module it runs but SHARED, in a stable order."""
    seen: set[str] = set()
    gan = False
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen or (m in SHARED and m != module):
            continue
        seen.add(m)
        direct, uses_gan = _imports(m)
        gan |= uses_gan
        todo += sorted(direct - seen)
    own = [f"pipeline/{module}.py"] + sorted(f"pipeline/{m}.py" for m in seen - {module})
    return (("gan",) if gan else ()) + tuple(own)
