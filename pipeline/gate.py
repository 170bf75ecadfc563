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

from .errors import DataError
from .evidence import interval
from .files import read_record
from .manifest import augmented_counts, read_manifest
from .params import Params
from .provenance import identity

GATE_FILE = "gate.json"                                 # under paths.reports


def decide(boot: dict[str, dict[str, np.ndarray]], names: list[str], metric: str, min_gain: float | None,
           confidence: float, share: float | None, images: int, baselines: tuple[str, ...] = (),
           candidate: str = "synthetic", undetermined: list[str] = (), measured_loss: float | None = None,
           synthetic_classes: list[str] = (), balancing: tuple[str, ...] = ()) -> dict:
    """Open the gate only when the synthetic arm beats the best other arm with confidence: the
    lower end of the paired bootstrap interval of its gain (pipeline/evidence.py: test images and
    classifier seeds redrawn) is above min_gain. A gain that test-image or seed noise could make
    is no gain: appending then would change the user's data for nothing. boot[arm][metric]: the
    metric's bootstrap values, replicate 0 the data as it is; boot[arm]["recall"]: per class.
    baselines: the arms it must beat and candidate the arm judged (pipeline/arms.py's table;
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

    fallback_arm: the baseline whose folder lands when the gate closes: the best of the
    `balancing` arms (their folders reach the plan's counts, what the user asked for), unless
    another baseline (the real images alone) beats it with confidence."""
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
    recall_gain = boot[candidate]["recall"] - boot[best_other]["recall"]
    r_lo, r_hi = interval(recall_gain, confidence)
    gate |= {"gain": round(float(gain[0]), 4), "interval": [round(float(lo), 4), round(float(hi), 4)],
             "per_class_recall_gain": {n: {"gain": round(float(recall_gain[0, k]), 4), "undetermined": True,
                                           "interval": None} if n in undetermined else
                                       {"gain": round(float(recall_gain[0, k]), 4),
                                        "interval": [round(float(r_lo[k]), 4), round(float(r_hi[k]), 4)]}
                                       for k, n in enumerate(names)}}
    shown = f"{gain[0]:+.4f}, {confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}]"
    if min_gain is None:
        return {**gate, "passed": True, "reason": f"gate off (evaluate.min_gain=null); {metric} gain {shown}"}
    if lo > min_gain:
        return {**gate, "passed": True, "reason": f"synthetic beats {best_other} on {metric} by {shown}, "
                                                 f"all above min_gain {min_gain}"}
    blind = sorted(set(undetermined) & set(synthetic_classes))
    measured = [k for k, n in enumerate(names) if n not in undetermined]
    if blind and measured and metric in ("macro_f1", "balanced_accuracy"):  # reported whether the rule is on or off
        per_class = "f1" if metric == "macro_f1" else "recall"
        on_measured = {a: boot[a][per_class][:, measured].mean(1) for a in [candidate, *others]}
        m_gain = on_measured[candidate] - np.max([on_measured[a] for a in others], axis=0)
        m_lo, m_hi = interval(m_gain, confidence)
        gate["measured_classes"] = {"classes": [names[k] for k in measured], "gain": round(float(m_gain[0]), 4),
                                    "interval": [round(float(m_lo), 4), round(float(m_hi), 4)],
                                    "max_loss": measured_loss}
        if measured_loss is not None and m_lo >= -measured_loss:
            return {**gate, "passed": True, "opened_on": "measured classes",
                    "reason": f"no sure {metric} gain overall ({shown}), but on the {len(measured)} classes with "
                              f"enough test images synthetic loses at most {measured_loss} to the best other arm "
                              f"({m_gain[0]:+.4f}, interval [{m_lo:+.4f}, {m_hi:+.4f}]), and the test split cannot "
                              f"measure classes {blind}, where its images go: the images the filter accepted "
                              "land there rather than duplicates or interpolations"}
    return {**gate, "passed": False, "synthetic_images": 0,
            "reason": f"synthetic does not beat {best_other} on {metric} with confidence: gain {shown}, whose "
                      f"lower end is not above min_gain {min_gain} (test images and classifier seeds could make "
                      "such a gain); no synthetic image is appended"}


def _fallback(boot: dict, others: list[str], balancing: list[str], metric: str, confidence: float) -> str:
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
