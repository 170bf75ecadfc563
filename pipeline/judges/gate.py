"""The gate: evaluate decides whether the synthetic images help; append acts on the decision.

Kept apart from evaluate (torch, scikit-learn) so that append, which only reads the
decision, starts in a fraction of a second.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..plumbing.errors import DataError
from .evidence import interval
from ..store.files import read_record
from ..store.manifest import augmented_counts, read_manifest
from ..plumbing.params import Params
from ..store.provenance import identity

GATE_FILE = "gate.json"                                 # under paths.reports


def decide(boot: dict[str, dict[str, np.ndarray]], names: list[str], *,
           metric: str,                            # evaluate.gate_metric
           min_gain: float | None,                 # the lower end of the gain's interval must be above it; None: off
           confidence: float,                      # of the central interval
           share: float | None,                    # the synthetic share val chose (recorded)
           images: int,                            # the synthetic images that share uses (recorded)
           baselines: tuple[str, ...] = (),        # the arms to beat (none named: every arm but the candidate)
           candidate: str = "synthetic",           # the arm judged
           undetermined: list[str] = (),           # classes with too few test images for a verdict of their own
           measured_loss: float | None = None,     # evaluate.measured_loss (below)
           synthetic_classes: list[str] = (),      # the classes the synthetic images go to
           balancing: tuple[str, ...] = ()) -> dict:  # the baselines whose folders reach the plan's counts
    """Open the gate only when the synthetic arm beats the best other arm with confidence: the
    lower end of the paired bootstrap interval of its gain (pipeline/judges/evidence.py: test images and
    classifier seeds redrawn) is above min_gain. A gain that test-image or seed noise could make
    is no gain: appending then would change the user's data for nothing. boot[arm][metric]: the
    metric's bootstrap values, replicate 0 the data as it is; boot[arm]["recall"]: per class.
    baselines: the arms it must beat and candidate the arm judged (pipeline/judges/arms.py's table;
    every arm but the candidate when none are named). undetermined: classes with too few test
    images for a per-class verdict: their recall gain is shown without an interval (one or two
    images make it 0 or 1, and an interval of [0, 0] would claim a certainty there is not); they
    count in the overall metric, whose interval carries their noise.

    What the test split cannot measure, it cannot decide: when the overall gain is not sure and
    synthetic images go to undetermined classes (synthetic_classes), the gate weighs what can be
    measured: it opens when, on the classes with enough test images, the synthetic arm loses at
    most measured_loss (the lower end of its gain's interval there; None: never open so). There
    the choice between ganaug's images and the baseline's duplicates or interpolations is blind
    either way; the images the filter vouched for land, and the decision says so.

    fallback_arm: the baseline whose folder lands when the gate closes (_fallback)."""
    others = [a for a in (baselines or boot) if a in boot and a != candidate]
    best_other = max(others, key=lambda a: boot[a][metric][0])
    gate = {"metric": metric, "min_gain": min_gain, "confidence": confidence, "best_other_arm": best_other,
            "best_other": round(float(boot[best_other][metric][0]), 4), "synthetic_share": share,
            "synthetic_images": images}
    gate["fallback_arm"] = _fallback(boot, others, [a for a in balancing if a in others], metric, confidence)
    if candidate not in boot:
        return {**gate, "passed": False, "gain": None, "interval": None, "synthetic_images": 0,
                "reason": "no synthetic image passed the filter: nothing to append"}
    # In each replicate, against the best of the other arms there: beating them all, not one.
    gain = boot[candidate][metric] - np.max([boot[a][metric] for a in others], axis=0)
    lo, hi = interval(gain, confidence)
    gate |= {"gain": round(float(gain[0]), 4), "interval": [round(float(lo), 4), round(float(hi), 4)],
             "per_class_recall_gain": _per_class_gain(boot[candidate]["recall"] - boot[best_other]["recall"],
                                                      names, undetermined, confidence)}
    shown = f"{gain[0]:+.4f}, {confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}]"
    if min_gain is None:
        return {**gate, "passed": True, "reason": f"gate off (evaluate.min_gain=null); {metric} gain {shown}"}
    if lo > min_gain:
        return {**gate, "passed": True, "reason": f"synthetic beats {best_other} on {metric} by {shown}, "
                                                 f"all above min_gain {min_gain}"}
    opened = _open_on_measured(boot, names, gate, shown, arms=[candidate, *others], undetermined=undetermined,
                               synthetic_classes=synthetic_classes, measured_loss=measured_loss)
    if opened is not None:
        return opened
    return {**gate, "passed": False, "synthetic_images": 0,
            "reason": f"synthetic does not beat {best_other} on {metric} with confidence: gain {shown}, whose "
                      f"lower end is not above min_gain {min_gain} (test images and classifier seeds could make "
                      "such a gain); no synthetic image is appended"}


def _open_on_measured(boot: dict, names: list[str], gate: dict, shown: str, *, arms: list[str],
                      undetermined: list[str], synthetic_classes: list[str], measured_loss: float | None) -> dict | None:
    """The gate opened on the measured classes (decide's docstring), or None; records the
    measured classes' gain in `gate` whether the rule is on or off."""
    metric = gate["metric"]
    blind = sorted(set(undetermined) & set(synthetic_classes))
    measured = [k for k, n in enumerate(names) if n not in undetermined]
    if not (blind and measured and metric in ("macro_f1", "balanced_accuracy")):
        return None
    on_measured, lo = _on_measured(boot, names, measured, metric, arms, confidence=gate["confidence"])
    gate["measured_classes"] = on_measured | {"max_loss": measured_loss}
    if measured_loss is None or lo < -measured_loss:
        return None
    gain, hi = on_measured["gain"], on_measured["interval"][1]
    return {**gate, "passed": True, "opened_on": "measured classes",
            "reason": f"no sure {metric} gain overall ({shown}), but on the {len(measured)} classes with "
                      f"enough test images synthetic loses at most {measured_loss} to the best other arm "
                      f"({gain:+.4f}, interval [{lo:+.4f}, {hi:+.4f}]), and the test split cannot "
                      f"measure classes {blind}, where its images go: the images the filter accepted "
                      "land there rather than duplicates or interpolations"}


def _per_class_gain(recall_gain: np.ndarray, names: list[str], undetermined: list[str], confidence: float) -> dict:
    """Each class's recall gain (replicates x classes), with its interval where the class has
    test images enough; an undetermined class's without one (never a [0, 0] it cannot show)."""
    lo, hi = interval(recall_gain, confidence)
    return {n: {"gain": round(float(recall_gain[0, k]), 4), "undetermined": True, "interval": None}
            if n in undetermined else
            {"gain": round(float(recall_gain[0, k]), 4), "interval": [round(float(lo[k]), 4), round(float(hi[k]), 4)]}
            for k, n in enumerate(names)}


def _on_measured(boot: dict, names: list[str], measured: list[int], metric: str, arms: list[str],
                 confidence: float) -> tuple[dict, float]:
    """The gain of arms[0] over the best of the others, on the measured classes alone (and the
    lower end of its interval, unrounded)."""
    per_class = "f1" if metric == "macro_f1" else "recall"
    on_measured = {a: boot[a][per_class][:, measured].mean(1) for a in arms}
    gain = on_measured[arms[0]] - np.max([on_measured[a] for a in arms[1:]], axis=0)
    lo, hi = interval(gain, confidence)
    return {"classes": [names[k] for k in measured], "gain": round(float(gain[0]), 4),
            "interval": [round(float(lo), 4), round(float(hi), 4)]}, float(lo)


def _fallback(boot: dict, others: list[str], balancing: list[str], metric: str, confidence: float) -> str:
    """The best of the `balancing` arms (their folders reach the plan's counts, what the user
    asked for), unless another baseline (the real images alone) beats it with confidence."""
    best = max(others, key=lambda a: boot[a][metric][0])
    if best in balancing or not balancing:
        return best
    best_balancing = max(balancing, key=lambda a: boot[a][metric][0])
    lo, _ = interval(boot[best][metric] - boot[best_balancing][metric], confidence)
    return best if lo > 0 else best_balancing


def cap_synthetic(synth: pd.DataFrame, real_counts: dict[str, int], share: float) -> pd.DataFrame:
    """At most `share` of each class's images synthetic (the first in seed order)."""
    if share >= 1.0:
        return synth
    keep = []
    for label, rows in synth.groupby("label", sort=False):
        n_real = real_counts.get(str(label), 0)
        limit = math.floor(share * n_real / (1 - share))
        keep.append(rows.sort_values("seed", kind="stable").head(limit))
    return pd.concat(keep) if keep else synth.head(0)


def read_gate(params: Params) -> dict:
    path = Path(params.paths.reports) / GATE_FILE
    if not (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: no gate decision; run `ganaug evaluate` before append")
    try:
        gate = read_record(path)
    except ValueError as e:
        raise DataError(f"{path}: not a gate decision ({e}); re-run `ganaug evaluate`") from None
    if not isinstance(gate.get("passed"), bool) or not all(isinstance(gate.get(k), str) for k in ("reason", "metric")):
        raise DataError(f"{path}: not a gate decision (a boolean 'passed', a 'reason' and a 'metric' are what "
                        "append reads); re-run `ganaug evaluate`")
    share = gate.get("synthetic_share")
    if share is not None and not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1):
        raise DataError(f"{path}: synthetic_share must be a number in (0, 1], found {share!r}; "
                        "re-run `ganaug evaluate`")
    return gate


def decided_under(params: Params) -> dict:
    """The params a gate decision rests on, as JSON values: evaluate's (but where and how fast its
    classifiers run) and the plan's counts."""
    return json.loads(json.dumps({
        "evaluate": params.evaluate.model_dump(mode="json", exclude={"device", "loader_workers"}),
        "generate.sampling_strategy": params.generate.sampling_strategy}))


def gated_synthetic(params: Params, prepared: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The accepted synthetic rows the gate lets through (none when it is closed)."""
    accepted_dir = Path(params.paths.accepted)
    accepted = read_manifest(accepted_dir)
    unknown = set(accepted["label"]) - set(prepared["label"])
    if unknown:
        raise DataError(f"{accepted_dir}: synthetic images of classes not in the data: {sorted(unknown)}")
    gate = read_gate(params)
    # The decision is about the sets evaluate judged, under the params it judged with: new
    # candidates filtered since (or another prepared set) are images nobody judged, and a
    # decision taken under another min_gain or plan is not this params' decision. Checked open
    # or closed: a closed gate names the baseline whose folder lands.
    now = {"paths.prepared": identity(params.paths.prepared), "paths.accepted": identity(accepted_dir)}
    judged = gate.get("judged")
    where = Path(params.paths.reports) / GATE_FILE
    if not isinstance(judged, dict) or any(judged.get(k) != v for k, v in now.items()):
        raise DataError(f"{where}: the gate decided on other images than the current {params.paths.accepted} (or "
                        f"{params.paths.prepared}), or does not say which it judged; re-run `ganaug evaluate` "
                        "before append")
    under = gate.get("decided_under")
    if under != decided_under(params):
        changed = sorted(k for k in decided_under(params) if not isinstance(under, dict) or under.get(k) !=
                         decided_under(params)[k]) if isinstance(under, dict) else ["(not recorded)"]
        raise DataError(f"{where}: the gate was decided under other params than the current ones ({', '.join(changed)} "
                        "changed since); re-run `ganaug evaluate` before append")
    if not gate["passed"]:
        return accepted.head(0), gate
    share = gate.get("synthetic_share")
    if share is not None:
        accepted = cap_synthetic(accepted, augmented_counts(prepared), float(share))
    return accepted, gate
