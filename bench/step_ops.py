"""What one GAN training step costs on the CPU: top-level aten ops (each a kernel launch on a
GPU, where the step is launch-bound), host syncs (`.item()` and friends, Adam's host-side step counter aside), and milliseconds.

    python bench/step_ops.py                        # this checkout
    python bench/step_ops.py --vs /tmp/oldpkg       # ... and, in the same run, alternating, the ganaug
                                                    # package importable from that folder (an older main)

Op counts: torch.profiler over 3 steps after 3 warm-up steps, width 32, 32 px, batch 4 (issue
27's setting); an op is top-level when no other profiled op encloses it (autograd's backward ops
included, as they run on their own thread). Host syncs: `aten::_local_scalar_dense`, what
`.item()`, `float()` and `bool()` of a tensor run. Milliseconds: at the default sizes (16 and 32 px,
width 32, batch 64), seed 0, the median of 3 blocks of 10 steps in a process, and the median over
--rounds fresh processes, this code's and the baseline's alternating.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def _trainer(size: int, width: int):
    from ganaug.gan import GANConfig, GANTrainer

    torch.manual_seed(0)
    return GANTrainer(GANConfig(size, 1, 10, width=width), device=torch.device("cpu"))


def _batches(size: int, batch: int):
    torch.manual_seed(1)
    return torch.rand(batch, 1, size, size) * 2 - 1, torch.randint(0, 10, (batch,))


def ops_per_step(size: int = 32, width: int = 32, batch: int = 4, steps: int = 3) -> dict:
    trainer = _trainer(size, width)
    x, y = _batches(size, batch)
    for _ in range(3):
        trainer.step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.step(x, y)
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    def in_optimizer(e):  # Adam's host-side step counter (the fused CPU kernel's); none on CUDA
        while e is not None:
            if e.name.startswith("Optimizer.step"):
                return True
            e = e.cpu_parent
        return False

    syncs = [e for e in events if e.name == "aten::_local_scalar_dense" and not in_optimizer(e)]
    names: dict[str, int] = {}
    for e in top:
        names[e.name] = names.get(e.name, 0) + 1
    common = sorted(names.items(), key=lambda kv: -kv[1])[:8]
    return {"top_level_ops": len(top) / steps, "host_syncs": len(syncs) / steps,
            "most_common": {k: v / steps for k, v in common}}


def ms_per_step(size: int, width: int = 32, batch: int = 64, rounds: int = 3, steps: int = 10) -> float:
    trainer = _trainer(size, width)
    x, y = _batches(size, batch)
    for _ in range(3):
        trainer.step(x, y)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step(x, y)
        times.append((time.perf_counter() - t0) / steps * 1000)
    return statistics.median(times)


def measure(what: str) -> dict:
    if what == "ops":
        return {"ops": ops_per_step()}
    return {"ms_16px": round(ms_per_step(16), 2), "ms_32px": round(ms_per_step(32), 2)}


def in_subprocess(what: str, package: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package.resolve())} if package else dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--json", what], env=env, cwd="/", capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vs", type=Path, help="a folder holding an older `ganaug` package: measured in the same run")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, this and the baseline alternating")
    ap.add_argument("--json", choices=["ops", "ms"], help="measure one thing, print one JSON object")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(args.json)))
        return
    # This machine's speed drifts by 10-20 % over minutes: the two codes' timings alternate,
    # each round a fresh process, and the medians are compared.
    runs = {"this": None, **({"baseline": args.vs} if args.vs else {})}
    result = {name: {**in_subprocess("ops", pkg), "rounds": []} for name, pkg in runs.items()}
    for _ in range(args.rounds):
        for name, pkg in runs.items():
            result[name]["rounds"].append(in_subprocess("ms", pkg))
    for name, r in result.items():
        for size in ("ms_16px", "ms_32px"):
            r[size] = statistics.median(x[size] for x in r["rounds"])
        print(f"{name}: {r['ops']['top_level_ops']:.0f} top-level aten ops a step, {r['ops']['host_syncs']:.0f} host "
              f"syncs; median ms a step (batch 64) {r['ms_16px']} at 16 px, {r['ms_32px']} at 32 px; rounds "
              f"{[(x['ms_16px'], x['ms_32px']) for x in r['rounds']]}; most common: {r['ops']['most_common']}")
    if "baseline" in result:
        here, b = result["this"], result["baseline"]
        result["ratios"] = {"ops": here["ops"]["top_level_ops"] / b["ops"]["top_level_ops"],
                            "ms_16px": here["ms_16px"] / b["ms_16px"], "ms_32px": here["ms_32px"] / b["ms_32px"]}
        print("this / baseline: " + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
