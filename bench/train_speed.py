"""Training speed of the conditional GAN, against this machine's measured conv peak.

    python bench/train_speed.py [--steps 100] [--size 16] [--width 32] [--batch 64]

Prints images/s, GFLOPS per step (counted by torch's FlopCounterMode), achieved GFLOPS,
and the ratio to a 3x3-convolution peak measured in the same run (the baseline).
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gan import GANConfig, GANTrainer, pick_device


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = pick_device()
    trainer = GANTrainer(GANConfig(args.size, 1, 10, width=args.width), device=device)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device) * 2 - 1
    y = torch.randint(0, 10, (args.batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        trainer.step(x, y)
    flops = counter.get_total_flops()
    for _ in range(5):  # warm-up
        trainer.step(x, y)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    achieved = flops * args.steps / dt / 1e9
    peak = conv_peak(device)
    print(f"device={device} threads={torch.get_num_threads()} size={args.size} width={args.width} batch={args.batch}")
    print(f"images/s={args.steps * args.batch / dt:.1f}  GFLOP/step={flops / 1e9:.3f}  "
          f"GFLOP/image={flops / 1e9 / args.batch:.4f}")
    print(f"achieved={achieved:.1f} GFLOPS  conv3x3 peak (baseline)={peak:.1f} GFLOPS  ratio={achieved / peak:.2f}")


if __name__ == "__main__":
    main()
