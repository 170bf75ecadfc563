"""The summary of a whole run (every stage's result), as markdown: what the Prefect flow
publishes as an artifact and `ganaug run` prints at its end."""
from __future__ import annotations

from pathlib import Path

from ..store.manifest import read_manifest
from .params import Params


def markdown(params: Params, results: dict) -> str:
    """A whole run in one page: per class what it had, what was accepted and landed; the arms'
    figures and the gate; the GAN's health; where the data went. The Prefect flow's summary
    artifact and the end of `ganaug run`."""
    ingested, trained, filtered = results["ingest"], results["train"], results["filter"]
    appended, evaluated = results["append"], results["evaluate"]
    before = {k: v["train"] for k, v in ingested["classes"].items()}
    accepted = {k: c["accepted"] for k, c in filtered["classes"].items()}
    # In place: {class: images}; a built set: {class: {"real": n, "synthetic": m, "duplicate": d}}.
    added = {k: v.get("synthetic", 0) if isinstance(v, dict) else v for k, v in appended["per_class"].items()}
    filled = {k: v.get("duplicate", 0) for k, v in appended["per_class"].items() if isinstance(v, dict)}
    lines = ["# ganaug augment run", "",
             "| class | real train | accepted synthetic | appended synthetic | duplicates filling it (append.fill) "
             "| acceptance rate |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, n in before.items():
        c = filtered["classes"].get(k, {})
        rate = "" if c.get("acceptance_rate") is None else f"{c['acceptance_rate']:.0%}"
        lines.append(f"| {k} | {n} | {accepted.get(k, 0)} | {added.get(k, 0)} | {filled.get(k, 0)} | {rate} |")
    gate = evaluated["gate"]
    arms = evaluated["arms"]
    lines += ["", "| metric | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    for m in ("balanced_accuracy", "macro_f1", "rare_recall"):
        lines.append(f"| {m} | " + " | ".join(_with_interval(a, m) for a in arms.values()) + " |")
    per_class = gate.get("per_class_recall_gain") or {}
    if per_class:
        lines += ["", f"Recall gain per class against {gate['best_other_arm']} "
                      f"({gate['confidence']:.0%} interval, test images and seeds redrawn):", "",
                  "| class | real train | gain | interval |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {before.get(k, '')} | {g['gain']:+.3f} | "
                  + (f"[{g['interval'][0]:+.3f}, {g['interval'][1]:+.3f}] |" if g.get("interval")
                     else "undetermined (too few test images) |") for k, g in per_class.items()]
        more = (gate.get("rests_on") or {}).get("more_evidence")
        lines += ["", f"Undetermined classes: {more}."] if more else []
    health = trained["health"]
    lines += ["", f"**Gate {'passed' if gate['passed'] else 'closed'}**: {gate['reason']}.",
              f"GAN: {trained['steps_done']} steps on {trained['device']}, {trained['images_per_s']} img/s, "
              f"best step {trained['best_step']}; health: "
              + ("ok" if health["status"] == "ok" else "**UNHEALTHY**: " + "; ".join(health["problems"])),
              f"Filter: mode {filtered['mode']}, {filtered['accepted']}/{filtered['needed']} accepted."]
    if "batch" in appended:
        version = (f"commit `{appended['commit'][:10]}`, tag `{appended['tag']}`" if appended["commit"]
                   else "no change")
        pushed = {True: "pushed", False: f"push failed: {appended.get('push_error', '')}",
                  None: "no remote"}[appended["pushed"]]
        lines.append(f"Data version: batch `{appended['batch']}` in `{appended['target']}`: {version} ({pushed}).")
    else:
        n = len(read_manifest(Path(params.paths.augmented)))
        landed = f": the **{appended['landed']}** folder ({appended['landed_because']})" if appended.get("landed") else ""
        lines.append(f"Augmented set: `{params.paths.augmented}` ({n} images){landed}.")
    return "\n".join(lines) + "\n"


def _with_interval(arm: dict, metric: str) -> str:
    lo, hi = arm.get(f"{metric}_interval", (None, None))
    shown = f"{arm[metric]:.4f} ± {arm[metric + '_std']:.4f}"
    return shown + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
