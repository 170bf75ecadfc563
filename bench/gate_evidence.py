"""Is the gate wrong, or only its evidence thin? ganaug's evaluate on a folder bench/tail.py left,
twice on the same accepted images and the same classifiers' recipe: once tested on its own
carve-outs (what a user gets: one test image of a 4-, 6- or 10-image class), once with the
kept-apart test images (100 a class on the tail, 70 on digits, which the GAN never saw) in place
of its test split. Where the second agrees with the independent judge (bench/tail.py) and the
first does not, the rule and the arms are right and the split is what fails; a user with a test
set of their own gets the second by giving it (ingest's table, `split` column).

    python bench/tail.py --work /tmp/tail                      # once: the folder, the judge
    python bench/gate_evidence.py --work /tmp/tail --size 32 --out /tmp/gate_evidence.json
    python bench/gate_evidence.py --work /tmp/digits --size 16
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.judge import read_image
from bench.tail import tail_params
from ganaug.pipeline import evaluate
from ganaug.pipeline.stages import run


class InMemory:
    """N x 1 x H x W uint8 images held in memory, indexed and narrowed as pixels.Images."""

    def __init__(self, x: torch.Tensor):
        self.x, self.shape = x, tuple(x.shape)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx) -> torch.Tensor:
        return self.x[idx if isinstance(idx, slice) else torch.as_tensor(np.asarray(idx))]

    def subset(self, idx) -> "InMemory":
        return InMemory(self[idx])


def kept_apart(folder: Path, size: int, label_map: dict[str, int]) -> tuple[InMemory, torch.Tensor]:
    paths = sorted(p for p in folder.glob("*/*.png") if p.parent.name in label_map)
    x = np.stack([read_image(p, size) for p in paths])[:, None]
    return InMemory(torch.from_numpy(x)), torch.tensor([label_map[p.parent.name] for p in paths])


def decide(work: Path, size: int, sets: list[str], test: Path | None) -> dict:
    """evaluate's decision on work's folder: on its own test split, or on the images under test."""
    params = tail_params(work, *sets, f"paths.reports={work / 'run' / ('reports-kept-apart' if test else 'reports-own')}",
                         size=size)
    own = evaluate._data
    if test is not None:
        def with_kept_apart(p):
            data = own(p)
            return dataclasses.replace(data, test=kept_apart(test, size, data.label_map))
        evaluate._data = with_kept_apart
    try:
        t0 = time.perf_counter()
        metrics = run("evaluate", params)
        seconds = round(time.perf_counter() - t0, 1)
    finally:
        evaluate._data = own
    gate = metrics["gate"]
    return {"test_images": gate["rests_on"]["test_images"], "seconds": seconds,
            "arms": {a: m["macro_f1"] for a, m in metrics["arms"].items()},
            "gain": gate["gain"], "interval": gate["interval"], "passed": gate["passed"],
            "best_other_arm": gate["best_other_arm"], "fallback_arm": gate["fallback_arm"],
            "undetermined": gate["rests_on"]["undetermined_classes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="a folder bench/tail.py ran in (its run/ and tail-test/)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--set", action="append", default=[], help="params overrides for evaluate, key=value")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = {"work": str(args.work), "sets": args.set}
    for name, test in (("own test split", None), ("kept-apart test images", args.work / "tail-test")):
        r = result[name] = decide(args.work, args.size, args.set, test)
        print(f"{name}: {r['test_images']} test images, arms {r['arms']}, gain {r['gain']:+.4f} "
              f"{r['interval']}, gate {'OPEN' if r['passed'] else 'closed'} ({r['seconds']} s)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
