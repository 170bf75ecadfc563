"""Pictures people would rather look at than read: sample grids, loss curves, score histograms."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..store.files import atomic_file, claim_report  # noqa: E402


def _save(fig, path: Path):
    claim_report(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def class_grid(rows: dict[str, np.ndarray], path: Path, title: str):
    """One row per class: {class name: uint8 NHWC images}."""
    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * 0.6 + 0.8, len(rows) * 0.6 + 0.5),
                             squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                img = imgs[c]
                ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, Path(path))


def loss_curves(history: pd.DataFrame, path: Path, health: dict | None = None):
    """Losses; D(real), D(fake) and their margin; the generator's diversity and validation FD."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3))
    a.plot(history["step"], history["loss_d"], label="D loss")
    a.plot(history["step"], history["loss_g"], label="G loss")
    a.axhline(2.0, color="grey", ls=":", lw=1, label="D loss of a dead D")
    b.plot(history["step"], history["d_real"], label="D(real)", lw=0.8)
    b.plot(history["step"], history["d_fake"], label="D(fake)", lw=0.8)
    if "margin" in history:
        b.plot(history["step"], history["margin"].rolling(10, min_periods=1).mean(), color="k",
               label="margin (smoothed)")
        b.axhline(0.0, color="grey", ls=":", lw=1)
    if "diversity_min" in history:
        d = history.dropna(subset=["diversity_min"])
        c.plot(d["step"], d["diversity_min"], label="diversity, worst class")
        c.axhline(1.0, color="grey", ls=":", lw=1, label="real images' diversity")
        c.set_ylim(bottom=0)
    if "val_frechet" in history:
        v = history.dropna(subset=["val_frechet"])
        c2 = c.twinx()
        c2.plot(v["step"], v["val_frechet"], "o-", color="tab:red", label="validation FD (right)")
        c2.legend(fontsize=7, loc="upper right")
    for ax in (a, b, c):
        ax.set_xlabel("step"), ax.legend(fontsize=7, loc="upper left"), ax.grid(alpha=0.3)
    if health and health.get("problems"):
        fig.suptitle("UNHEALTHY: " + "; ".join(p.split(":")[0] for p in health["problems"]), color="tab:red")
    _save(fig, Path(path))


def score_histograms(candidates: pd.DataFrame, real: pd.DataFrame, thresholds: dict[str, float], path: Path):
    """Per class: D scores of candidates vs held-out real images, with the threshold."""
    labels = sorted(candidates["label"].unique())
    ncols = min(5, max(1, len(labels)))
    nrows = -(-len(labels) // ncols) if labels else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        ax.set_visible(True)
        c = candidates.loc[candidates["label"] == label, "d_score"]
        r = real.loc[real["label"] == label, "d_score"]
        bins = np.histogram_bin_edges(np.concatenate([c, r]) if len(r) else c, bins=20)
        ax.hist(c, bins=bins, alpha=0.6, label="synthetic", density=True)
        if len(r):
            ax.hist(r, bins=bins, alpha=0.6, label="real (val)", density=True)
        if label in thresholds:
            ax.axvline(thresholds[label], color="k", ls="--", lw=1)
        ax.set_title(f"class {label}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("discriminator scores (dashed: acceptance threshold)", fontsize=9)
    fig.tight_layout()
    _save(fig, Path(path))


def notice(path: Path, text: str):
    """A picture that says why there is nothing to show (DVC expects every declared plot)."""
    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    _save(fig, Path(path))


def learning_curves(training: dict[str, dict], path: Path):
    """Evaluate's arms: val macro-F1 and val loss against steps (mean over seeds), one line an
    arm, so a reader sees each classifier reach its plateau (or not) before the gate trusts it."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
    drawn = False
    for arm, t in training.items():
        curve = t.get("curve")
        if not curve:
            continue
        drawn = True
        label = arm + ("" if t.get("converged") else " (not converged)")
        a.plot(curve["step"], curve["val_macro_f1"], marker=".", label=label)
        b.plot(curve["step"], curve["val_loss"], marker=".", label=label)
    if not drawn:
        plt.close(fig)
        notice(path, "no val image: no learning curve to draw")
        return
    a.set_xlabel("step"), a.set_ylabel("val macro-F1 (classes val holds)"), a.legend(fontsize=7)
    b.set_xlabel("step"), b.set_ylabel("val loss"), b.set_yscale("log")
    fig.suptitle("evaluate: each arm's classifier on val while it trains", fontsize=9)
    _save(fig, Path(path))
