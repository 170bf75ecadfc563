"""Data-parallel training on the CPU: 2 processes x batch B (torchrun, DDP, gloo) against
1 process x batch 2B, the same steps on the demo's prepared set.

    dvc repro                          # first: the demo's data/prepared
    python -m bench.ddp [--steps 300] [--batch 32]

Prints images/s of both, the ratio, and their loss curves side by side (means over a fifth
of the run each): the two should train alike (same effective batch, same learning rates),
not identically (each process draws its own latents; BatchNorm sees B, not 2B).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    from ganaug.pipeline.plumbing.params import load_params
    from ganaug.pipeline.train import train

    runs = {}
    with tempfile.TemporaryDirectory() as d:
        for label, nproc, batch in (("1 x 2B", 1, 2 * args.batch), ("2 x B", 2, args.batch)):
            out = Path(d) / f"n{nproc}"
            p = load_params(None, [f"paths.prepared={REPO / 'data/prepared'}", f"paths.model={out / 'gan.pt'}",
                                   f"paths.train_reports={out}", f"train.steps={args.steps}",
                                   f"train.checkpoint_every={args.steps}", f"train.batch_size={batch}",
                                   f"train.nproc={nproc}"])
            metrics = train(p)
            runs[label] = (metrics, pd.read_csv(out / "losses.csv"))
    (m1, h1), (m2, h2) = runs.values()
    print(f"\nimages/s: 1 process x batch {2 * args.batch}: {m1['images_per_s']}; "
          f"2 processes x batch {args.batch}: {m2['images_per_s']}; ratio {m2['images_per_s'] / m1['images_per_s']:.2f}")
    print(f"health: {m1['health']['status']} (margin {m1['health'].get('margin_last_fifth')}) vs "
          f"{m2['health']['status']} (margin {m2['health'].get('margin_last_fifth')}); best validation FD "
          f"{m1['best_val_frechet']} vs {m2['best_val_frechet']}")
    print(f"{'steps':>12} | {'loss_d 1x2B':>11} {'loss_d 2xB':>10} | {'loss_g 1x2B':>11} {'loss_g 2xB':>10} | "
          f"{'margin 1x2B':>11} {'margin 2xB':>10}")
    fifth = args.steps // 5
    for i in range(5):
        a = h1[(h1.step > i * fifth) & (h1.step <= (i + 1) * fifth)].mean()
        b = h2[(h2.step > i * fifth) & (h2.step <= (i + 1) * fifth)].mean()
        print(f"{i * fifth + 1:>5}-{(i + 1) * fifth:<6} | {a.loss_d:11.3f} {b.loss_d:10.3f} | {a.loss_g:11.3f} "
              f"{b.loss_g:10.3f} | {a.margin:11.3f} {b.margin:10.3f}")


if __name__ == "__main__":
    main()
