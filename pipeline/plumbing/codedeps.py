"""The source a stage runs, derived from its imports: what this repository's dvc.yaml lists as a
stage's code deps, so that editing any module a stage runs re-runs it under `dvc repro`.

Hand-kept lists went stale (train, generate, filter, evaluate and append each ran modules theirs
omitted, and `dvc repro` called stale outputs up to date); an import graph cannot forget one.
Every import counts, the ones inside functions too (stage modules import torch lazily). `gan/`
is one dep: the pure GAN package, whole. A module is named by its path under pipeline/ without
the suffix: "train", "store/manifest".
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the repository (the package's source root)
PIPELINE = ROOT / "pipeline"
# The plumbing every stage shares (params, the registry, the CLI, errors, path and memory guards; and
# gan/hyper.py, the GAN's defaults params reads): an edit there is an edit to every stage, and
# `dvc repro --force` is the way to say so. Listing them would re-run six stages for a help text.
SHARED = frozenset({"stages", "plumbing/params", "plumbing/errors", "plumbing/paths", "plumbing/guards",
                    "plumbing/cli", "plumbing/dvcfile", "plumbing/codedeps"})


def _module(parts: list[str]) -> str | None:
    """The pipeline module a dotted name under ganaug.pipeline names (None: a package or nothing)."""
    path = "/".join(parts)
    return path if path and (PIPELINE / f"{path}.py").is_file() else None


@cache
def _imports(module: str) -> tuple[frozenset[str], bool]:
    """(pipeline modules `module` imports directly, whether it imports the gan package)."""
    tree = ast.parse((PIPELINE / f"{module}.py").read_text())
    package = module.split("/")[:-1]           # where its relative imports start
    found, gan = set(), False
    for node in ast.walk(tree):
        targets: list[list[str]] = []           # dotted names, from ganaug on
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["ganaug", "pipeline", *package][:len(package) + 2 - (node.level - 1)]
            else:
                base = []
            full = base + (node.module.split(".") if node.module else [])
            targets = [full] + [full + [a.name] for a in node.names]  # the module, or names that are modules
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        for t in targets:
            gan |= t[:2] == ["ganaug", "gan"]
            if t[:2] == ["ganaug", "pipeline"] and (m := _module(t[2:])):
                found.add(m)
    return frozenset(found - {module}), gan


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
