"""Which class test tells a rare class's good candidates from the wrong-class ones?

    python bench/class_test.py --work /tmp/tail        # a folder bench/tail.py left

On the tail benchmark the filter's class test (the judge's argmax) passed images of the 10- and
6-image classes that an independent yardstick recognises a third of the time. Here every first-
round candidate of each class that passed realness and novelty is put to each class test; per
test: the share it keeps, the yardstick's agreement among those kept (bench/judge.yardstick,
trained on the kept-apart images ganaug never saw: never tuned on), and the share of the class's
kept-apart real images it passes (a test that refuses real images of the class is no test).

The tests, all from the filter's judge (trained as the filter trains it) or several of them:
- argmax:     the judge's most probable class is the class (today's filter);
- prototype:  the nearest class mean of the real training images, in the judge's features
              (cosine), is the class's: few-shot learning's prototype rule, which a class of 3-9
              images can be judged by (its mean) where a softmax head barely learnt it;
- argmax+prototype: both;
- ensemble:   five judges (seeds evaluate.seed .. +4) all give the class.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge  # noqa: E402
from bench.datasets import TAIL_COUNTS  # noqa: E402
from bench.tail import tail_params  # noqa: E402
from ganaug.pipeline.judges import classifier, quality  # noqa: E402
from ganaug.pipeline.filter import reference_judge  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402
from ganaug.pipeline.store.pixels import Images, open_pixels  # noqa: E402


def features(model, x: torch.Tensor) -> np.ndarray:
    return classifier.predict(model, x)[1]


def prototypes(model, x_real: torch.Tensor, y_real: np.ndarray, n: int) -> np.ndarray:
    f = features(model, x_real)
    f = f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-8)
    protos = np.stack([f[y_real == c].mean(0) for c in range(n)])
    return protos / np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-8)


def nearest_prototype(model, protos: np.ndarray, x: torch.Tensor) -> np.ndarray:
    f = features(model, x)
    f = f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-8)
    return (f @ protos.T).argmax(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--members", type=int, default=5)
    args = ap.parse_args()
    work = Path(args.work)
    params = tail_params(work)
    size = params.ingest.size
    prepared, cand = read_manifest(params.paths.prepared), read_manifest(params.paths.candidates)
    label_map = label_map_of(prepared)
    names = list(label_map)
    at = np.flatnonzero(((prepared["split"] == "train") & (prepared["source"] == "real")).to_numpy())
    x_real = Images(params.paths.prepared, len(prepared), at)[:]
    y_real = np.array([label_map[v] for v in prepared["label"].iloc[at]])
    radii, _ = quality.class_copy_radii(params.paths.prepared, prepared, label_map, params.filter.copy_quantile)
    judges = []
    for m in range(args.members):
        seeded = tail_params(work, f"evaluate.seed={params.evaluate.seed + m}")
        judges.append(reference_judge(seeded, prepared, label_map).cpu().eval())
    protos = prototypes(judges[0], x_real, y_real, len(names))
    yard = judge.yardstick(work, size, names)
    x_fresh, y_fresh, _ = judge.read_folder(work / "tail-test", size, names)
    report = json.loads((Path(params.paths.reports) / "filter.json").read_text())
    cand_u8 = open_pixels(params.paths.candidates, len(cand), "generate")  # row i: image i
    tests = ("argmax", "prototype", "argmax+prototype", "ensemble")
    print(f"{'class':>5} {'images':>6} {'cands':>5} | " + " | ".join(f"{t}: kept, agree, fresh" for t in tests))
    for c in np.argsort(TAIL_COUNTS):
        name = str(c)
        rows = cand[cand["label"] == name]
        if not len(rows):
            continue
        x = torch.from_numpy(cand_u8[rows.index.to_numpy(), :, :, 0].copy()).unsqueeze(1)
        # Realness and novelty as the filter has them (threshold from filter.json, radius here).
        threshold = report["classes"].get(name, {}).get("threshold")
        real_ok = rows["d_score"].to_numpy() >= (threshold if threshold is not None else -np.inf)
        novel = ~quality.near_copies(Images(params.paths.prepared, len(prepared), at[y_real == c]), x, radii[name])
        x = x[torch.from_numpy(real_ok & novel)]
        if not len(x):
            continue
        fresh = torch.from_numpy(x_fresh[y_fresh == c]).unsqueeze(1)
        right = classifier.predict(yard, x)[0] == c

        def verdicts(imgs):
            am = classifier.predict(judges[0], imgs)[0] == c
            pr = nearest_prototype(judges[0], protos, imgs) == c
            en = np.all([classifier.predict(j, imgs)[0] == c for j in judges], axis=0)
            return {"argmax": am, "prototype": pr, "argmax+prototype": am & pr, "ensemble": en}
        on_cand, on_fresh = verdicts(x), verdicts(fresh)
        cells = []
        for t in tests:
            keep = on_cand[t]
            agree = f"{right[keep].mean():.2f}" if keep.any() else "  - "
            cells.append(f"{keep.mean():.2f}, {agree}, {on_fresh[t].mean():.2f}")
        print(f"{name:>5} {TAIL_COUNTS[c]:>6} {len(x):>5} | " + " | ".join(f"{s:>26}" for s in cells), flush=True)
    print("(yardstick agreement of every candidate that passed realness and novelty, the base rate: per row, "
          "'argmax' at kept 1.00 would read it)")


if __name__ == "__main__":
    main()
