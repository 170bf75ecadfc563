"""Training speed of the conditional GAN: `ganaug train`'s loop against a bare loop of the same
networks, batch and optimizer steps, and both against this machine's measured conv peak.

    python bench/train_speed.py [--steps 200] [--size 16] [--width 32] [--batch 64]

Baselines measured in the same run:
- bare: GANTrainer.step on in-memory batches, nothing else (no data pipeline, logging, health
  probes, validation, checkpoints);
- peak: a large 3x3 convolution's GFLOPS (what the hardware does at its best here).
`ganaug train` runs on the digits demo at the same size, width and batch; its images/s counts
the whole loop (health probes, validation of G_ema, checkpoints), not the one-off set-up.
FLOPs are counted by torch's FlopCounterMode on one real step.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganaug.gan import GANConfig, GANTrainer, pick_device  # noqa: E402


def conv_peak(device, seconds: float = 3.0) -> float:
    """GFLOPS of a large 3x3 convolution forward: what the hardware does at its best here."""
    x = torch.randn(64, 64, 32, 32, device=device)
    w = torch.randn(64, 64, 3, 3, device=device)
    flops = 2 * 64 * 64 * 32 * 32 * 64 * 9
    F.conv2d(x, w, padding=1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        F.conv2d(x, w, padding=1)
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return flops * n / (time.perf_counter() - t0) / 1e9


def bare_loop(args, device) -> tuple[float, float]:
    """(images/s, GFLOP per step) of GANTrainer.step alone, default hyper-parameters."""
    torch.manual_seed(0)
    trainer = GANTrainer(GANConfig(args.size, 1, 10, width=args.width), device=device)
    x = torch.rand(1024, 1, args.size, args.size, device=device) * 2 - 1
    y = torch.randint(0, 10, (1024,), device=device)
    with FlopCounterMode(display=False) as counter:
        trainer.step(x[:args.batch], y[:args.batch])
    for _ in range(5):  # warm-up
        trainer.step(x[:args.batch], y[:args.batch])
    t0 = time.perf_counter()
    for i in range(args.steps):
        idx = torch.randint(0, 1024, (args.batch,), device=device)
        trainer.step(x[idx], y[idx])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - t0), counter.get_total_flops() / 1e9


def ganaug_train(args) -> dict:
    from ganaug.pipeline.demo_data import demo_data
    from ganaug.pipeline.ingest import ingest
    from ganaug.pipeline.plumbing.params import load_params
    from ganaug.pipeline.train import train

    with tempfile.TemporaryDirectory() as tmp:
        p = load_params(None, [f"paths.{k}={Path(tmp) / k}" for k in
                               ("demo", "prepared", "model", "train_reports", "reports")] +
                        [f"paths.raw={Path(tmp) / 'demo' / 'index.csv'}", f"demo.size={args.size}",
                         f"ingest.size={args.size}", f"train.steps={args.steps}", f"train.width={args.width}",
                         f"train.batch_size={args.batch}"])  # checkpoint_every as in params: 250
        demo_data(p)
        ingest(p)
        t0 = time.perf_counter()
        metrics = train(p)
        metrics["wall_s"] = time.perf_counter() - t0
        return metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    device = pick_device()
    bare, gflop = bare_loop(args, device)
    m = ganaug_train(args)
    peak = conv_peak(device)
    print(f"device={device} threads={torch.get_num_threads()} size={args.size} width={args.width} "
          f"batch={args.batch} steps={args.steps} (2 D-steps per G-step, default recipe)")
    print(f"GFLOP/step={gflop:.3f}  GFLOP/image={gflop / args.batch:.4f}  conv3x3 peak={peak:.1f} GFLOPS")
    for name, ips in (("bare loop (baseline)", bare), ("ganaug train loop", m["images_per_s"])):
        print(f"{name:<22} images/s={ips:.1f}  achieved={ips / args.batch * gflop:.1f} GFLOPS  "
              f"of peak={ips / args.batch * gflop / peak:.2f}")
    print(f"ganaug train / bare = {m['images_per_s'] / bare:.3f}   (whole stage incl. set-up: "
          f"{m['wall_s']:.1f} s for {m['steps_this_run']} steps)")


if __name__ == "__main__":
    main()
