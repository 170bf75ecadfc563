"""The GPU check, in one call: what a lent CUDA machine does with ganaug, every figure printed
and written to a JSON file.

    python bench/gpu.py --out gpu.json                # on a CUDA machine: about 5 minutes
    python bench/gpu.py --smoke --out smoke.json      # anywhere: a few steps of each, on the CPU

Figures, all measured in the same run:
1. The GAN step alone (GANTrainer.step on in-memory batches) in fp32, bf16 autocast, bf16 +
   channels_last, and bf16 + channels_last + torch.compile (the last skipped with --smoke or
   --no-compile): images/s, achieved TFLOPS (FlopCounterMode on one step), and the share of a
   bf16 matmul's measured peak on this device. ganaug's trainer uses bf16 + channels_last on
   CUDA; the others switch those off, to show what each is worth.
2. `ganaug train`'s whole loop (health probes, validation, checkpoints) at the same size, width
   and batch, against the bare bf16 + channels_last step: the ratio.
3. Evaluate's classifiers (bench/evaluate_speed.py: the demo's 16 small CNNs of 210 steps) on
   the device: the former loop one member after another, fit_all one by one, and fit_all
   together (one network of grouped convolutions, what evaluate runs on a GPU): seconds, ratios.
4. The demo end to end (demo-data and every stage) with train and evaluate on the device,
   seconds per stage, and evaluate's gate decision.
On a CPU (--smoke; tests/test_bench_gpu.py runs it) the figures only show the script works: CPU
bf16 is emulated, so its "peak" is no peak. Seeds: torch 0 for the step runs; params' for the demo.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evaluate_speed import measure as classifier_speed  # noqa: E402
from bench.train_speed import ganaug_train  # noqa: E402
from ganaug.gan import GANConfig, GANTrainer, pick_device  # noqa: E402

VARIANTS = {"fp32": (False, False, False), "bf16": (True, False, False),
            "bf16+channels_last": (True, True, False), "bf16+channels_last+compile": (True, True, True)}
SMOKE_DEMO = ["demo.size=8", "ingest.size=8", "train.steps=10", "train.width=8", "train.z_dim=16",
              "train.batch_size=16", "evaluate.epochs=1", "evaluate.repeats=1", "evaluate.width=8"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, seconds: float) -> float:
    """TFLOPS of a large bf16 matmul: what the device does at its best (dense tensor cores)."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    a @ b
    sync(device)
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    sync(device)
    return 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e12


def trainer_for(cfg: GANConfig, device: torch.device, bf16: bool, channels_last: bool, compile: bool):
    trainer = GANTrainer(cfg, device=device, compile=compile)
    # The trainer's own choice on CUDA is bf16 + channels_last; switch each off (or on, on a CPU).
    trainer._autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for net in (trainer.G, trainer.D, trainer.G_ema):
        net.to(memory_format=fmt)
    return trainer, fmt


def step_speed(args, device, bf16: bool, channels_last: bool, compile: bool) -> dict:
    torch.manual_seed(0)
    trainer, fmt = trainer_for(GANConfig(args.size, 1, 10, width=args.width), device, bf16, channels_last, compile)
    x = (torch.rand(4 * args.batch, 1, args.size, args.size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (4 * args.batch,), device=device)
    with FlopCounterMode(display=False) as counter:  # counted before any compiled step
        trainer.step(x[:args.batch], y[:args.batch])
    t0 = time.perf_counter()
    for _ in range(args.warmup):  # compile happens here
        trainer.step(x[:args.batch], y[:args.batch])
    sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.steps):
        j = (i % 4) * args.batch
        trainer.step(x[j:j + args.batch], y[j:j + args.batch])
    sync(device)
    ips = args.steps * args.batch / (time.perf_counter() - t0)
    tflop_step = counter.get_total_flops() / 1e12
    return {"images_per_s": round(ips, 1), "tflops": round(ips / args.batch * tflop_step, 5),
            "tflop_per_step": round(tflop_step, 5), "warmup_s": round(warmup_s, 1)}


def demo_on_device(device: torch.device, smoke: bool) -> dict:
    from ganaug.pipeline.params import Params, load_params
    from ganaug.pipeline.stages import STAGES, run

    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"paths.{k}={Path(tmp) / v}" for k, v in Params().paths.model_dump().items() if k != "raw"]
        params = load_params(None, paths + [f"paths.raw={Path(tmp) / 'data/demo/index.csv'}",
                                            f"train.device={device}", f"evaluate.device={device}"]
                             + (SMOKE_DEMO if smoke else []))
        seconds, results = {}, {}
        for name in ("demo-data", *STAGES):
            t0 = time.perf_counter()
            results[name] = run(name, params)
            seconds[name] = round(time.perf_counter() - t0, 1)
    gate = results["evaluate"]["gate"]
    return {"seconds": seconds, "total_s": round(sum(seconds.values()), 1),
            "train_images_per_s": results["train"].get("images_per_s"),
            "gate": {k: gate.get(k) for k in ("passed", "gain", "interval", "reason")}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="a few steps of each, a tiny demo: the CPU path")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.size, args.width, args.batch, args.steps, args.warmup = 16, 8, 16, 3, 1
    device = pick_device()
    info = {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "size": args.size, "width": args.width, "batch": args.batch, "steps": args.steps, "smoke": args.smoke}
    print(json.dumps(info), flush=True)
    figures: dict = {"info": info, "peak_bf16_tflops": round(matmul_peak(device, 0.5 if args.smoke else 3.0), 4)}
    print(f"bf16 matmul peak: {figures['peak_bf16_tflops']} TFLOPS", flush=True)
    figures["step"] = {}
    for name, (bf16, channels_last, compile) in VARIANTS.items():
        if compile and (args.smoke or args.no_compile):
            continue
        s = step_speed(args, device, bf16, channels_last, compile)
        s["share_of_peak"] = round(s["tflops"] / max(figures["peak_bf16_tflops"], 1e-9), 4)
        figures["step"][name] = s
        print(f"step {name:<28} {s['images_per_s']:>10.1f} img/s  {s['tflops']:.3f} TFLOPS  "
              f"{s['share_of_peak']:.1%} of peak  (warm-up {s['warmup_s']} s)", flush=True)
    loop = ganaug_train(argparse.Namespace(size=args.size, width=args.width, batch=args.batch,
                                           steps=max(args.steps, 20)))
    bare = figures["step"]["bf16+channels_last"]["images_per_s"]
    figures["train_loop"] = {"images_per_s": loop["images_per_s"], "wall_s": round(loop["wall_s"], 1),
                             "ratio_to_bare": round(loop["images_per_s"] / bare, 3)}
    print(f"ganaug train loop: {loop['images_per_s']} img/s, {figures['train_loop']['ratio_to_bare']}x the bare "
          "bf16 + channels_last step", flush=True)
    ev = classifier_speed(16, 4 if args.smoke else 16, 5 if args.smoke else 210, device, 1 if args.smoke else 2)
    figures["evaluate_classifiers"] = ev
    print(f"evaluate's {ev['members']} classifiers on {device}: {ev['median_s']} s, x{ev['speedup_over_before']} "
          f"of the former loop; together and one by one agree on {ev['together_agrees_with_one_by_one']:.1%}",
          flush=True)
    figures["demo"] = demo_on_device(device, args.smoke)
    print(f"demo end to end on {device}: {figures['demo']['seconds']} (total {figures['demo']['total_s']} s); "
          f"gate {figures['demo']['gate']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
