"""The GPU check, in one call: what a lent CUDA machine does with ganaug, every figure printed
and written to a JSON file.

    python bench/gpu.py --out gpu.json                # on a CUDA machine: about 7 minutes
    python bench/gpu.py --smoke --out smoke.json      # anywhere: a few steps of each, on the CPU

Figures, all measured in the same run:
1. The GAN step alone (GANTrainer.step on in-memory batches) at batch 64 and 512, widths 32 and
   128: eager (the trainer's own bf16 autocast + channels_last on CUDA), CUDA graphs
   (torch.compile mode reduce-overhead: what train.compile=null picks on CUDA) and inductor's
   default compile; and fp32 eager at one size, to show what bf16 is worth. For each: ms/step,
   images/s, achieved TFLOPS (FlopCounterMode on one step), the share of a bf16 matmul's measured
   peak, the warm-up (compile) seconds, and, for the compiled ones, the largest relative
   difference of their first steps' losses from eager's (same seed, same batches).
2. `ganaug train`'s whole loop (health probes, validation, checkpoints) at batch 64, width 128,
   against the bare step of the mode train picks: the ratio.
3. Evaluate's classifiers (bench/evaluate_speed.py) on the device: one by one and together.
4. The gpu preset (pipeline/presets/gpu.yaml) on the tail benchmark (bench/datasets.py: 10 classes
   of 400 down to 4 images, 32 px; needs `pip install --no-deps animal-mnist`, a wheel to carry)
   for --preset-minutes of training: its health (D margin, conditioning: each class's label
   agreement), validation FD, steps/s.
5. The demo end to end (demo-data and every stage) on the device, seconds per stage, the gate.
On a CPU (--smoke; tests/test_bench_gpu.py runs it) the figures only show the script works: CPU
bf16 is emulated, so its "peak" is no peak, and the compiled variants are left out (minutes of
compiling). Seeds: torch 0 for the step runs; params' for the stages.
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

# (name, compile mode, fp32 instead of the trainer's own precision)
VARIANTS = [("eager", False, False), ("graphs", "reduce-overhead", False), ("compile", True, False),
            ("fp32 eager", False, True)]
SHAPES = [(64, 32), (64, 128), (512, 32), (512, 128)]  # (batch, width)
SMOKE_DEMO = ["demo.size=8", "ingest.size=8", "train.steps=10", "train.width=8", "train.z_dim=16",
              "train.batch_size=16", "evaluate.epochs=1", "evaluate.repeats=1", "evaluate.width=8",
              "evaluate.arm_classifier.epochs=1", "evaluate.arm_classifier.width=8",
              "evaluate.arm_classifier.min_steps=1"]


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


def trainer_for(cfg: GANConfig, device: torch.device, compile, fp32: bool) -> GANTrainer:
    torch.manual_seed(0)
    trainer = GANTrainer(cfg, device=device, compile=compile)
    if fp32:  # the trainer's own choice on CUDA is bf16 + channels_last: both off
        trainer._autocast = lambda: torch.autocast(device.type, enabled=False)
        for net in (trainer.G, trainer.D, trainer.G_ema):
            net.to(memory_format=torch.contiguous_format)
    return trainer


def step_speed(device, size: int, batch: int, width: int, compile, fp32: bool, steps: int, warmup: int,
               eager_losses: list | None) -> tuple[dict, list]:
    trainer = trainer_for(GANConfig(size, 1, 10, width=width), device, compile, fp32)
    fmt = torch.channels_last if device.type == "cuda" and not fp32 else torch.contiguous_format
    g = torch.Generator(device=device).manual_seed(1)
    x = (torch.rand(4 * batch, 1, size, size, device=device, generator=g) * 2 - 1).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (4 * batch,), device=device, generator=g)
    if not compile:
        with FlopCounterMode(display=False) as counter:
            trainer.step(x[:batch], y[:batch])
        flops = counter.get_total_flops()
        trainer = trainer_for(GANConfig(size, 1, 10, width=width), device, compile, fp32)  # afresh: same seed
    else:
        flops = None
    torch.manual_seed(2)
    t0 = time.perf_counter()
    first = [trainer.losses(trainer.step(x[:batch], y[:batch])) for _ in range(warmup)]  # compiles here
    sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        j = (i % 4) * batch
        trainer.step(x[j:j + batch], y[j:j + batch])
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    out = {"ms_per_step": round(seconds * 1000, 3), "images_per_s": round(batch / seconds, 1),
           "warmup_s": round(warmup_s, 1), "compile_error": trainer.compile_error}
    if flops:
        out |= {"tflop_per_step": round(flops / 1e12, 6), "tflops": round(flops / seconds / 1e12, 5)}
    if eager_losses is not None:  # the same seed and batches as eager: how far its losses are
        out["max_rel_diff_vs_eager"] = round(max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-3)
                                                 for a, b in zip(first, eager_losses) for k in a), 5)
    return out, first


def preset_on_tail(device: torch.device, minutes: float, smoke: bool) -> dict:
    """The gpu preset's training on the tail benchmark for a fixed time: health and conditioning."""
    from bench.datasets import write_digits_tail, write_tail
    from ganaug.pipeline.ingest import ingest
    from ganaug.pipeline.plumbing.params import load_params, preset_overrides
    from ganaug.pipeline.train import train

    with tempfile.TemporaryDirectory() as tmp:
        # The smoke run (CI has no Animal-MNIST) takes scikit-learn's digits cut to a tail.
        raw, _ = (write_digits_tail if smoke else write_tail)(Path(tmp) / "raw")
        sets = [f"paths.{k}={Path(tmp) / k}" for k in ("prepared", "model", "train_reports", "reports")]
        sets += [f"paths.raw={raw}", "ingest.size=16" if smoke else "ingest.size=32", f"train.device={device}",
                 f"train.minutes={minutes}"]
        if smoke:
            sets += ["train.steps=8", "train.width=8", "train.batch_size=8", "train.checkpoint_every=4"]
        params = load_params(None, preset_overrides("gpu") + sets)
        ingest(params)
        t0 = time.perf_counter()
        m = train(params)
    h = m["health"]
    agreement = h.get("label_agreement_per_class") or {}
    return {"minutes": minutes, "steps_done": m["steps_done"], "steps_per_s": round(m["steps_this_run"] / m["seconds"], 2),
            "wall_s": round(time.perf_counter() - t0, 1), "health": h["status"], "problems": h["problems"],
            "margin_last_fifth": h.get("margin_last_fifth"), "label_agreement_per_class": agreement,
            "best_val_frechet": m.get("best_val_frechet"), "compile": m.get("compile")}


def demo_on_device(device: torch.device, smoke: bool) -> dict:
    from ganaug.pipeline.plumbing.params import Params, load_params
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
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--preset-minutes", type=float, default=3.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shapes, variants = SHAPES, VARIANTS
    if args.smoke:
        args.size, args.steps, args.warmup, args.preset_minutes = 8, 3, 2, 0.05
        shapes, variants = [(16, 8)], [v for v in VARIANTS if not v[1]]
    device = pick_device()
    info = {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
            "steps": args.steps, "smoke": args.smoke}
    print(json.dumps(info), flush=True)
    figures: dict = {"info": info, "peak_bf16_tflops": round(matmul_peak(device, 0.5 if args.smoke else 3.0), 4)}
    print(f"bf16 matmul peak: {figures['peak_bf16_tflops']} TFLOPS", flush=True)
    figures["step"] = []
    for batch, width in shapes:
        eager = None
        for name, compile, fp32 in variants:
            if fp32 and (batch, width) != shapes[-1]:
                continue  # fp32 at the largest shape only: what bf16 is worth
            s, first = step_speed(device, args.size, batch, width, compile, fp32, args.steps, args.warmup,
                                  eager if compile else None)
            if name == "eager":
                eager, flops = first, s.get("tflop_per_step")
            if "tflops" not in s and flops:  # compiled: the same work as eager's
                s["tflop_per_step"], s["tflops"] = flops, round(flops * 1000 / s["ms_per_step"], 5)
            s["share_of_peak"] = round(s.get("tflops", 0) / max(figures["peak_bf16_tflops"], 1e-9), 4)
            figures["step"].append({"variant": name, "batch": batch, "width": width, **s})
            print(f"step {name:<11} batch {batch:>3} width {width:>3}: {s['ms_per_step']:>8.2f} ms "
                  f"{s['images_per_s']:>10.1f} img/s {s.get('tflops', 0):.3f} TFLOPS {s['share_of_peak']:.1%} of peak"
                  f" (warm-up {s['warmup_s']} s{', vs eager ' + str(s['max_rel_diff_vs_eager']) if compile else ''}"
                  f"{', COMPILE FAILED: ' + s['compile_error'] if s['compile_error'] else ''})", flush=True)
    batch, width = (16, 8) if args.smoke else (64, 128)
    loop = ganaug_train(argparse.Namespace(size=args.size, width=width, batch=batch, steps=max(args.steps, 20) * 5))
    picked = "graphs" if device.type == "cuda" else "eager"  # what train.compile=null runs
    bare = next(r for r in figures["step"] if (r["variant"], r["batch"], r["width"]) == (picked, batch, width))
    figures["train_loop"] = {"images_per_s": loop["images_per_s"], "wall_s": round(loop["wall_s"], 1),
                             "compile": loop.get("compile"), "bare_step": picked,
                             "ratio_to_bare": round(loop["images_per_s"] / bare["images_per_s"], 3)}
    print(f"ganaug train loop: {loop['images_per_s']} img/s, {figures['train_loop']['ratio_to_bare']}x the bare "
          f"{picked} step", flush=True)
    ev = classifier_speed(16, 4 if args.smoke else 16, 5 if args.smoke else 210, device, 1 if args.smoke else 2)
    figures["evaluate_classifiers"] = ev
    print(f"evaluate's {ev['members']} classifiers on {device}: {ev['median_s']} s", flush=True)
    figures["preset_on_tail"] = preset_on_tail(device, args.preset_minutes, args.smoke)
    print(f"gpu preset on the tail, {args.preset_minutes} min: {figures['preset_on_tail']}", flush=True)
    figures["demo"] = demo_on_device(device, args.smoke)
    print(f"demo end to end on {device}: {figures['demo']['seconds']} (total {figures['demo']['total_s']} s); "
          f"gate {figures['demo']['gate']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
