"""Why D died and G collapsed: the training recipe one change at a time, on the digits demo.

    OMP_NUM_THREADS=1 python bench/recipe_ablation.py --tag previous --n_dis 1 --lr_d 2e-4 --aug translation,cutout --ms 0
    OMP_NUM_THREADS=1 python bench/recipe_ablation.py --tag ganaug          # today's defaults

Trains gan.GANTrainer alone (no pipeline) for --steps on the demo's train split (16 px,
class-balanced batches of 64, seed 0) and prints, over the last fifth of the run: D's hinge
loss, the margin D(real) - D(fake), the share of active ReLU features before D's pooled head;
at the end, from G_ema with 32 fixed seeds per class: class agreement (a logistic regression on
pixels trained on every real image) and within-class pixel diversity against the real images'
(min over classes, the two rare digits, mean). Writes the sample grid to /tmp/ablation_<tag>.png.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganaug.gan import GANConfig, GANTrainer, TrainHyper, sample_images  # noqa: E402
from ganaug.pipeline.demo_data import demo_data  # noqa: E402
from ganaug.pipeline.store.images import load_tensor, to_uint8  # noqa: E402
from ganaug.pipeline.ingest import ingest  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402
from ganaug.pipeline.plumbing.params import load_params  # noqa: E402
from ganaug.pipeline.plumbing.plots import class_grid  # noqa: E402


def spread(f: torch.Tensor) -> float:
    n = len(f)
    return (torch.cdist(f, f).sum() / (n * (n - 1))).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--n_dis", type=int, default=2)
    ap.add_argument("--lr_d", type=float, default=8e-4)
    ap.add_argument("--aug", default="translation")
    ap.add_argument("--ms", type=float, default=0.1)
    ap.add_argument("--tag", default="run")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = load_params(None, [f"paths.demo={tmp}/demo", f"paths.raw={tmp}/demo/index.csv",
                               f"paths.prepared={tmp}/prepared", f"paths.reports={tmp}/reports"])
        demo_data(p)
        ingest(p)
        root = Path(p.paths.prepared)
        df = read_manifest(root)
        lm = label_map_of(df)
        tr, rest = df[df.split == "train"], df[df.split != "train"]
        x = load_tensor([root / q for q in tr.path], 1)
        y = torch.tensor([lm[v] for v in tr.label])
        xt = load_tensor([root / q for q in rest.path], 1)
        yt = torch.tensor([lm[v] for v in rest.label])
    torch.manual_seed(0)
    hyper = TrainHyper(lr_d=a.lr_d, n_dis=a.n_dis, diffaug=tuple(s for s in a.aug.split(",") if s),
                       mode_seeking=a.ms)
    t = GANTrainer(GANConfig(16, 1, 10, 128, 32), hyper)
    balance = 1.0 / torch.bincount(y).float()[y]
    acts, hist = {}, []
    t.D.blocks.register_forward_hook(lambda m, i, o: acts.__setitem__("h", o.detach()))
    t0 = time.time()
    for s in range(a.steps):
        idx = torch.multinomial(balance, 64, replacement=True, generator=torch.Generator().manual_seed(s))
        losses = t.losses(t.step(x[idx], y[idx]))
        if s % 10 == 0:
            hist.append({**losses, "alive": (acts["h"] > 0).float().mean().item()})
    seconds = time.time() - t0
    t.refresh_ema_batchnorm()
    tail = hist[len(hist) * 4 // 5:]
    from sklearn.linear_model import LogisticRegression

    allx, ally = torch.cat([x, xt]), torch.cat([y, yt])
    clf = LogisticRegression(max_iter=2000).fit(allx.flatten(1).numpy(), ally.numpy())
    k = 32
    imgs = sample_images(t.G_ema, [c for c in range(10) for _ in range(k)], list(range(10 * k)))
    agree = float((clf.predict(imgs.flatten(1).numpy()) == np.repeat(np.arange(10), k)).mean())
    div = [spread(imgs[c * k:(c + 1) * k].flatten(1)) / spread(allx[ally == c].flatten(1)) for c in range(10)]
    print(json.dumps({
        "tag": a.tag, "steps": a.steps, "n_dis": a.n_dis, "lr_d": a.lr_d, "aug": a.aug, "mode_seeking": a.ms,
        "seconds": round(seconds), "loss_d_last_fifth": round(float(np.mean([h["loss_d"] for h in tail])), 3),
        "margin_last_fifth": round(float(np.mean([h["d_real"] - h["d_fake"] for h in tail])), 3),
        "active_relu_last_fifth": round(float(np.mean([h["alive"] for h in tail])), 3),
        "class_agreement": round(agree, 3), "diversity_min": round(min(div), 3),
        "diversity_rare_3_8": [round(div[3], 3), round(div[8], 3)], "diversity_mean": round(float(np.mean(div)), 3)}))
    u = to_uint8(imgs)
    class_grid({str(c): u[c * k:c * k + 10] for c in range(10)}, Path(f"/tmp/ablation_{a.tag}.png"), a.tag)


if __name__ == "__main__":
    main()
