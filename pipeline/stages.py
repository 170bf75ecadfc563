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


def summarize(name: str, r: dict) -> str:
    """One line per stage result, for the CLI and the Prefect logs alike."""
    if name == "demo-data":
        return f"wrote the digits demo; train images per class: {r}"
    if name == "ingest":
        return (f"{r['images']} images in {len(r['classes'])} classes; "
                f"{len(r['quarantined'])} quarantined, {len(r['duplicates'])} duplicates, "
                f"{r['skipped_synthetic']} synthetic rows skipped")
    if name == "train" and not r["steps_this_run"]:
        return f"already trained to {r['steps']} steps (checkpoint unchanged)"
    if name == "train":
        return (f"{r['steps']} steps ({r['steps_this_run']} this run) on {r['device']}, "
                f"{r['images_per_s']} img/s, {r['achieved_gflops']} GFLOPS")
    if name == "generate":
        return f"needed {r['needed']}; candidates {r['candidates']}"
    if name == "filter":
        rates = {k: c["acceptance_rate"] for k, c in r["classes"].items()}
        return f"accepted {r['accepted']}/{r['needed']} needed; acceptance per class {rates}"
    if name == "append" and "batch" in r:
        state = f"commit {r['commit'][:8]}, tag {r['tag']}" if r["changed"] else "already appended"
        return f"batch {r['batch']}: {r['images']} synthetic images into {r['target']} ({state})"
    if name == "append":
        state = "updated" if r["changed"] else "already up to date"
        return f"{r['real']} real + {r['synthetic']} synthetic images ({state})"
    if name == "evaluate":
        a, o, b = r["real_only"], r["real_oversampled"], r["augmented"]
        return (f"balanced accuracy: real-only {a['balanced_accuracy']:.4f}, over-sampled "
                f"{o['balanced_accuracy']:.4f}, augmented {b['balanced_accuracy']:.4f}")
    return str(r)


__all__ = ["STAGES", "Stage", "demo_data", "summarize"]
