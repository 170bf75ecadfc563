"""Would a confidence floor on the filter's class judge keep the recognisable rare-class images?

    python bench/judge_confidence.py --work /tmp/tail-new     # a folder bench/tail.py left

On the tail benchmark the class judge (argmax over the classes) passed images of the 10- and
6-image classes that an independent yardstick recognises only a third of the time. Here, per
class: the filter's judge (retrained as the filter trains it, seed evaluate.seed) scores the
accepted images and the class's kept-apart real images (which a filter should pass); for each
floor t on the judge's probability of the class, the share of accepted images kept, the
yardstick's agreement among them (bench/judge.yardstick), and the share of fresh real images
that would pass; and whether the probability ranks the recognisable accepted images first (AUC,
and the agreement in the more probable half). A floor is worth having if agreement rises while
fresh images still pass.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge  # noqa: E402
from bench.datasets import TAIL_COUNTS  # noqa: E402
from bench.tail import tail_params  # noqa: E402
from ganaug.pipeline.judges import classifier  # noqa: E402
from ganaug.pipeline.filter import reference_judge  # noqa: E402
from ganaug.pipeline.store.manifest import label_map_of, read_manifest  # noqa: E402

FLOORS = (0.0, 0.5, 0.7, 0.9)


def probability_of(model, x: torch.Tensor, c: int) -> np.ndarray:
    with torch.no_grad():
        return model.head(model.features(classifier.nchw_as_float(x))).softmax(1)[:, c].numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    params = tail_params(work)
    size = params.ingest.size
    prepared, accepted = read_manifest(params.paths.prepared), read_manifest(params.paths.accepted)
    label_map = label_map_of(prepared)
    names = list(label_map)
    torch.manual_seed(0)
    model = reference_judge(params, prepared, label_map).cpu().eval()
    yard = judge.yardstick(work, size, names)
    x_fresh, y_fresh, _ = judge.read_folder(work / "tail-test", size, names)
    from sklearn.metrics import roc_auc_score

    print(f"{'class':>5} {'images':>6} | " + " | ".join(f"p >= {t}: kept, agree, fresh" for t in FLOORS)
          + " | AUC | agree, top half by p")
    for c in np.argsort(TAIL_COUNTS)[::-1]:
        name = str(c)
        mine = accepted[accepted["label"] == name]
        if not len(mine):
            continue
        x = torch.from_numpy(np.stack([judge.read_image(Path(params.paths.accepted) / p, size)
                                       for p in mine["path"]])).unsqueeze(1)
        fresh = torch.from_numpy(x_fresh[y_fresh == c]).unsqueeze(1)
        p_acc, p_fresh = probability_of(model, x, c), probability_of(model, fresh, c)
        right = classifier.predict(yard, x)[0] == c
        # fresh: the share of the class's unseen real images the judge gives its class and at least t
        fresh_ok = classifier.predict(model, fresh)[0] == c
        cells = []
        for t in FLOORS:
            keep = p_acc >= t
            agree = f"{right[keep].mean():.2f}" if keep.any() else "  - "
            cells.append(f"{keep.mean():.2f}, {agree}, {(fresh_ok & (p_fresh >= t)).mean():.2f}")
        # Does the judge's probability rank the recognisable ones first (AUC 0.5: no)?
        auc = f"{roc_auc_score(right, p_acc):.2f}" if 0 < right.mean() < 1 else "  - "
        top = right[p_acc >= np.median(p_acc)].mean()
        print(f"{name:>5} {TAIL_COUNTS[c]:>6} | " + " | ".join(f"{s:>24}" for s in cells)
              + f" | {auc} | {top:.2f}", flush=True)


if __name__ == "__main__":
    main()
