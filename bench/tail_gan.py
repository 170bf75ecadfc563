"""Does the generator's tail borrow from its head? Generator recipes compared on the tail benchmark.

    python bench/tail_gan.py --work /tmp/tailgan                               # 16 px, the default budget
    python bench/tail_gan.py --work /tmp/tailgan --variant gsr:train.gsr=0.5 --variant both:'train.gsr=0.5;train.lecam=0.3'
    python bench/tail_gan.py --size 32 --set train.minutes=20 --variant base:

Data: the tail benchmark (bench/datasets.py: Animal-MNIST, classes of 400 down to 4 images as an
ImageFolder, no split), ingested once with ganaug's defaults; each variant then trains its own
GAN on it with the same budget (train.steps, or train.minutes). The baseline, "base", is ganaug's
recipe as it stands, trained in the same run.

Yardstick: nothing ganaug fits. An independent classifier (ganaug's SmallCNN architecture at
width 32, trained here on the Animal-MNIST images the benchmark never uses, ~500 a class) gives
per class: label agreement (it assigns a sample to the class it was generated for), Fréchet
distance and diversity in its features against the class's 100 kept-apart real images. CAS: the
plain judge of bench/judge.py trained on 100 samples a class alone, its recall per class on the
kept-apart images. Memorization: share of samples within the class's copy radius of one of its
training images (the filter's definition). Figures for the three rarest classes (6, 10 and 4
images: 5, 9 and 3 for training) against the other seven. Seeds: params' (0), samples 0..99.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge as plain  # noqa: E402
from bench.datasets import TAIL_COUNTS, write_tail  # noqa: E402
from ganaug.gan import sample_images, load_sampler  # noqa: E402
from ganaug.pipeline.judges import classifier, quality  # noqa: E402
from ganaug.pipeline.store.checkpoints import load_checkpoint  # noqa: E402
from ganaug.pipeline.ingest import ingest  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402
from ganaug.pipeline.plumbing.params import load_params  # noqa: E402
from ganaug.pipeline.train import train  # noqa: E402

RAREST = [str(c) for c in np.argsort(TAIL_COUNTS)[:3]]
PER_CLASS = 100


def measure(params, yardstick, x_fresh: np.ndarray, y_fresh: np.ndarray, names: list[str],
            truncation: float | None = None) -> dict:
    state = load_checkpoint(params.paths.model)
    G, _ = load_sampler(state, torch.device("cpu"))
    labels = [c for c in range(len(names)) for _ in range(PER_CLASS)]
    x_syn = sample_images(G, labels, list(range(PER_CLASS)) * len(names), truncation=truncation)
    y_syn = np.array(labels)
    pred, f_syn = classifier.predict(yardstick, x_syn)
    _, f_real = classifier.predict(yardstick, torch.from_numpy(x_fresh).unsqueeze(1))
    prepared = read_manifest(params.paths.prepared)
    lm = label_map_of(prepared)
    radii, _ = quality.class_copy_radii(params.paths.prepared, prepared, lm, params.filter.copy_quantile)
    from ganaug.pipeline.store.pixels import Images

    train_rows = np.flatnonzero(((prepared["split"] == "train") & (prepared["source"] == "real")).to_numpy())
    train_x = Images(params.paths.prepared, len(prepared), train_rows)
    train_lab = prepared["label"].iloc[train_rows].to_numpy()
    u8 = ((x_syn.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    cas_model = plain.train_plain(u8[:, 0].numpy(), y_syn, len(names), 0)
    cas = plain.predict(cas_model, x_fresh)
    per = {}
    for c, name in enumerate(names):
        s, r = y_syn == c, y_fresh == c
        per[name] = {
            "label_agreement": float((pred[s] == c).mean()),
            "frechet": classifier.frechet_distance(f_real[r], f_syn[s]),
            "diversity": quality.spread(f_syn[s]) / max(quality.spread(f_real[r]), 1e-12),
            "memorization": quality.memorization(train_x.subset(train_lab == name), u8[s], radii[name]),
            "cas_recall": float((cas[r] == c).mean()),
        }
    metrics = json.loads((Path(params.paths.train_reports) / "metrics.json").read_text())

    def mean(key, group):
        return round(float(np.mean([per[n][key] for n in group])), 3)

    others = [n for n in names if n not in RAREST]
    out = {f"{k}_{g}": mean(k, grp) for k in ("label_agreement", "frechet", "diversity", "memorization",
                                                  "cas_recall")
           for g, grp in (("rare", RAREST), ("other", others))}
    out |= {"steps": metrics["steps_done"], "seconds": metrics["seconds"], "best_step": metrics["best_step"],
            "margin": metrics["health"].get("margin_last_fifth"), "health": metrics["health"]["status"],
            "per_class": {n: {k: round(v, 3) for k, v in d.items()} for n, d in per.items()}}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="data, the yardstick and every variant's run stay here")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:section.key=value;... (default: base, gsr, lecam, transition)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="params for every variant")
    ap.add_argument("--truncation", type=float, action="append", default=[],
                    help="also measure each variant's samples with latents truncated at +-T (repeatable)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    variants = args.variant or ["base:", "gsr:train.gsr=0.5", "lecam:train.lecam=0.3",
                                "transition:train.transition=[200,500]"]
    work = Path(args.work)
    if not (work / "tail").is_dir():
        write_tail(work)
    base = [f"paths.raw={work / 'tail'}", f"ingest.size={args.size}", f"paths.prepared={work / f'prepared-{args.size}'}",
            f"paths.reports={work / 'reports'}"] + args.overrides
    params = load_params(None, base)
    if not (Path(params.paths.prepared) / "manifest.parquet").is_file():
        ingest(params)
    names = list(label_map_of(read_manifest(params.paths.prepared)))
    x_fresh, y_fresh, _ = plain.read_folder(work / "tail-test", args.size, names)
    yardstick = plain.yardstick(work, args.size, names)
    acc = (classifier.predict(yardstick, torch.from_numpy(x_fresh).unsqueeze(1))[0] == y_fresh).mean()
    print(f"yardstick accuracy on the kept-apart real images: {acc:.3f}")
    results = {}
    for spec in variants:
        name, _, sets = spec.partition(":")
        extra = [s for s in sets.split(";") if s]
        run = work / f"{name}-{args.size}"
        p = load_params(None, base + extra + [f"paths.model={run / 'gan.pt'}", f"paths.train_reports={run / 'reports'}"])
        t0 = time.perf_counter()
        if not (run / "gan.pt").is_file():
            train(p)
        results[name] = measure(p, yardstick, x_fresh, y_fresh, names) | {"wall_s": round(time.perf_counter() - t0, 1),
                                                                            "overrides": extra}
        print(f"[{name}] {json.dumps({k: v for k, v in results[name].items() if k != 'per_class'})}", flush=True)
        for t in args.truncation:  # the same checkpoint, its latents truncated
            results[f"{name}@{t:g}"] = measure(p, yardstick, x_fresh, y_fresh, names, t) | {"wall_s": 0.0, "overrides": extra}
            print(f"[{name}@{t:g}] {json.dumps({k: v for k, v in results[f'{name}@{t:g}'].items() if k != 'per_class'})}",
                  flush=True)
    keys = [k for k in next(iter(results.values())) if k not in ("per_class", "overrides")]
    print(f"\ntail benchmark at {args.size} px; rare = classes {RAREST} (3-9 training images), other = the rest")
    print(f"{'figure':<24}" + "".join(f"{n:>13}" for n in results))
    for k in keys:
        print(f"{k:<24}" + "".join(f"{results[n][k]!s:>13}" for n in results))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "yardstick_accuracy": float(acc),
                                              "results": results}, indent=1))


if __name__ == "__main__":
    main()
