"""The stages in pipeline order: the one registry the CLI, dvc.yaml and the Prefect flows share.

Stage modules are imported when a stage runs, not when the CLI starts: torch, scikit-learn
and matplotlib take seconds to import, and `ganaug params` or a DVC stage should not pay
for the stages it does not run.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .params import Params

Stage = Callable[[Params], dict]


@dataclass(frozen=True)
class StageRef:
    target: str   # "module:function"
    help: str

    def load(self) -> Stage:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


STAGES: dict[str, StageRef] = {
    "ingest": StageRef("pipeline.ingest:ingest", "validate, convert and split the images into a manifest"),
    "train": StageRef("pipeline.train:train", "train the conditional GAN; checkpoint, metrics, sample grid"),
    "generate": StageRef("pipeline.generate:generate", "generate scored candidates for the classes that need them"),
    "filter": StageRef("pipeline.filter:filter_candidates", "keep candidates D scores as real enough; top up"),
    "evaluate": StageRef("pipeline.evaluate:evaluate",
                         "real-only vs over-sampled vs SMOTE vs synthetic classifier; decide the gate"),
    "append": StageRef("pipeline.append:append",
                       "build the augmented training set (or append in place), as the gate allows"),
}
DEMO_DATA = StageRef("pipeline.demo_data:demo_data", "write the long-tailed digits demo dataset to paths.demo")


def summarize(name: str, r: dict) -> str:
    """One line per stage result, for the CLI and the Prefect logs alike."""
    if name == "demo-data":
        return f"wrote the digits demo; train images per class: {r}"
    if name == "ingest":
        return (f"{r['images']} images in {len(r['classes'])} classes; "
                f"{len(r['quarantined'])} quarantined, {len(r['duplicates'])} duplicates, "
                f"{r['skipped_synthetic']} synthetic rows skipped")
    if name == "train":
        h = r["health"]
        verdict = ("healthy" if h["status"] == "ok" else "UNHEALTHY: " + "; ".join(h["problems"]))
        if not r["steps_this_run"]:
            return f"already trained to {r['steps_done']} steps (checkpoint unchanged); {verdict}"
        stop = {"early": ", stopped early", "budget": ", stopped at train.minutes"}.get(r.get("stopped"), "")
        return (f"{r['steps_done']}/{r['steps']} steps ({r['steps_this_run']} this run{stop}) on {r['device']}, "
                f"{r['images_per_s']} img/s, {r['achieved_gflops']} GFLOPS; best step {r['best_step']} "
                f"(validation FD {r['best_val_frechet']}); D margin {h.get('margin_last_fifth')}; {verdict}")
    if name == "generate":
        return f"needed {r['needed']}; candidates {r['candidates']}"
    if name == "filter":
        rates = {k: c["acceptance_rate"] for k, c in r["classes"].items()}
        hopeless = f"; HOPELESS, stopped generating for {r['hopeless']}" if r.get("hopeless") else ""
        return f"accepted {r['accepted']}/{r['needed']} needed; acceptance per class {rates}{hopeless}"
    if name == "append" and "batch" in r:
        if not r["gate"]["passed"]:
            return f"no new version of {r['target']}: gate closed ({r['gate']['reason']})"
        state = f"commit {r['commit'][:8]}, tag {r['tag']}" if r["changed"] else "already appended"
        return f"batch {r['batch']}: {r['images']} synthetic images into {r['target']} ({state})"
    if name == "append":
        state = "updated" if r["changed"] else "already up to date"
        gate = "" if r["gate"]["passed"] else f"; gate closed: {r['gate']['reason']}"
        return f"{r['real']} real + {r['synthetic']} synthetic images ({state}){gate}"
    if name == "evaluate":
        g = r["gate"]
        m = g["metric"]
        arms = ", ".join(f"{arm} {r[arm][m]:.4f}" for arm in ("real_only", "real_oversampled", "smote", "synthetic")
                         if arm in r)
        return f"{m}: {arms}; gate {'PASSED' if g['passed'] else 'CLOSED'}: {g['reason']}"
    return str(r)


__all__ = ["STAGES", "DEMO_DATA", "Stage", "StageRef", "summarize"]
