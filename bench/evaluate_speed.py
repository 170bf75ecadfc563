"""Evaluate's classifiers: trained one by one as before, one by one as now, and all together.

    python bench/evaluate_speed.py [--size 16] [--members 16] [--steps 210] [--device cpu] [--rounds 3]

Evaluate trains `members` small CNNs of one shape (on the demo: 3 baselines and 2 synthetic
shares x 3 seeds, and CAS: 16 fits of 210 steps, batch 64, width 16, 16 px grey). Three ways, in
turns (A B C A B C ...: the machine's drift falls on all alike), on sklearn's digits resized to
`size`, each member its own seed:

- before:   the loop evaluate ran until this bench was written (NCHW, Adam's per-tensor loop),
            written out here, one member after another;
- one by one: classifier.fit_all(together=False): NHWC and fused Adam, what the CPU runs;
- together: classifier.fit_all(together=True): one network of grouped convolutions, what a GPU runs.

Prints each way's seconds for all members (median of the rounds, and the spread) and the ratios
to `before`, and checks that together and one by one agree on the test digits' predictions.
Seeds: member k has seed k; the digits' split is fixed (every fourth image a test image).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganaug.pipeline.judges import classifier  # noqa: E402


def digits(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([cv2.resize((im * 255 / 16).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
                     for im in d.images])
    return torch.from_numpy(imgs)[:, None], torch.from_numpy(d.target).long()


def before(x, y, n_classes, steps, batch, lr, width, seed, device) -> classifier.SmallCNN:
    """The former classifier.fit's loop: NCHW, Adam's default per-tensor update on the CPU."""
    torch.manual_seed(seed)
    model = classifier.SmallCNN(x.shape[1], n_classes, width).to(device)
    forward = lambda xb: model.head(model.features(xb))  # noqa: E731 (not SmallCNN.forward: that is NHWC now)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.multinomial(torch.ones(len(y)), batch, replacement=True, generator=g)
        loss = F.cross_entropy(forward((x[idx].float() / 127.5 - 1).to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(size: int, members: int, steps: int, device: torch.device, rounds: int, batch: int = 64,
            width: int = 16, lr: float = 0.002) -> dict:
    x, y = digits(size)
    train, test = torch.arange(len(y)) % 4 != 0, torch.arange(len(y)) % 4 == 0
    x_tr, y_tr = x[train], y[train]
    ways = {
        "before": lambda: [before(x_tr, y_tr, 10, steps, batch, lr, width, k, device) for k in range(members)],
        "one_by_one": lambda: classifier.fit_all([classifier.Member(x_tr, y_tr, k) for k in range(members)], 10,
                                                 classifier.Training(steps, batch, lr, width, device=device),
                                                 together=False),
        "together": lambda: classifier.fit_all([classifier.Member(x_tr, y_tr, k) for k in range(members)], 10,
                                               classifier.Training(steps, batch, lr, width, device=device),
                                               together=True),
    }
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    models = {}
    for _ in range(rounds):
        for name, way in ways.items():
            sync(device)
            t0 = time.perf_counter()
            models[name] = way()
            sync(device)
            seconds[name].append(time.perf_counter() - t0)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    preds = {k: np.stack([classifier.predict(m, x[test])[0] for m in ms]) for k, ms in models.items()}
    truth = y[test].numpy()
    return {
        "size": size, "members": members, "steps": steps, "batch": batch, "width": width, "device": str(device),
        "rounds": rounds, "seconds": {k: [round(s, 2) for s in v] for k, v in seconds.items()},
        "median_s": {k: round(v, 2) for k, v in median.items()},
        "speedup_over_before": {k: round(median["before"] / v, 2) for k, v in median.items()},
        "test_accuracy": {k: round(float((p == truth).mean()), 4) for k, p in preds.items()},
        "together_agrees_with_one_by_one": round(float((preds["together"] == preds["one_by_one"]).mean()), 4),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--steps", type=int, default=210)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    r = measure(args.size, args.members, args.steps, torch.device(args.device), args.rounds)
    print(f"{r['members']} classifiers x {r['steps']} steps, {r['size']} px, batch {r['batch']}, width "
          f"{r['width']}, on {r['device']}, {torch.get_num_threads()} threads, {r['rounds']} rounds in turn")
    for k in r["median_s"]:
        print(f"  {k:11} {r['median_s'][k]:7.2f} s (rounds {r['seconds'][k]})  x{r['speedup_over_before'][k]:.2f} "
              f"of before  test accuracy {r['test_accuracy'][k]:.4f}")
    print(f"  together and one by one predict alike on {r['together_agrees_with_one_by_one']:.1%} of the test digits")


if __name__ == "__main__":
    main()
