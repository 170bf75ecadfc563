"""The gate: evaluate decides whether the synthetic images help; append acts on the decision.

Kept apart from evaluate (torch, scikit-learn) so that append, which only reads the
decision, starts in a fraction of a second.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .errors import DataError
from .params import Params

GATE_FILE = "gate.json"                                 # under paths.reports
OTHER_ARMS = ("real_only", "real_oversampled", "smote")  # what the synthetic arm must beat


def decide(means: dict, metric: str, min_gain: float | None, share: float | None, images: int) -> dict:
    """Open the gate only when the synthetic arm beats every other arm by more than min_gain
    and by more than the seed spread (a gain the classifier's own seed noise could make is
    no gain: appending then would change the user's data for nothing)."""
    best_other = max(OTHER_ARMS, key=lambda a: means[a][metric])
    gate = {"metric": metric, "min_gain": min_gain, "best_other_arm": best_other,
            "best_other": means[best_other][metric], "synthetic_share": share, "synthetic_images": images}
    if "synthetic" not in means:
        return {**gate, "passed": False, "gain": None, "spread": None, "synthetic_images": 0,
                "reason": "no synthetic image passed the filter: nothing to append"}
    gain = round(means["synthetic"][metric] - means[best_other][metric], 4)
    spread = max(means["synthetic"][f"{metric}_std"], means[best_other][f"{metric}_std"])
    gate |= {"gain": gain, "spread": spread}
    if min_gain is None:
        return {**gate, "passed": True, "reason": f"gate off (evaluate.min_gain=null); {metric} gain {gain:+.4f}"}
    needed = max(min_gain, spread)
    if gain > needed:
        return {**gate, "passed": True, "reason": f"synthetic beats {best_other} on {metric} by {gain:+.4f} "
                                                 f"(> min_gain {min_gain} and seed spread {spread:.4f})"}
    return {**gate, "passed": False, "synthetic_images": 0,
            "reason": f"synthetic does not beat {best_other} on {metric}: {gain:+.4f}, needs > {needed:.4f} "
                      f"(min_gain {min_gain}, seed spread {spread:.4f}); no synthetic image is appended"}


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
    if not path.is_file():
        raise DataError(f"{path}: no gate decision; run `ganaug evaluate` before append")
    try:
        gate = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a gate decision ({e}); re-run `ganaug evaluate`") from None
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        raise DataError(f"{path}: not a gate decision (no boolean 'passed'); re-run `ganaug evaluate`")
    share = gate.get("synthetic_share")
    if share is not None and not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1):
        raise DataError(f"{path}: synthetic_share must be a number in (0, 1], found {share!r}; "
                        "re-run `ganaug evaluate`")
    return gate
