"""Rare classes the way users have them: does ganaug make the rarest classes better?

    python bench/tail.py                                   # defaults, as a new user runs ganaug
    python bench/tail.py --work /tmp/tail --from filter    # keep the folder; redo from a stage on
    python bench/tail.py --set train.minutes=20 --out tail.json

Data (bench/datasets.py, `tail`): Animal-MNIST at 32 px, classes cut to 400, 200, 100, 75, 50,
35, 20, 10, 6 and 4 images, handed to ganaug as an ImageFolder with no split column (so ganaug's
own carve-outs are what is tested); 100 test images per class kept apart, which ganaug never sees.

Every stage runs with the defaults (no params.yaml; only the image size and the paths set).
Then, per class: what the split gave to train/val/test, what the filter generated, accepted and
rejected and why (its pictures are in <work>/run/reports/). Then the judgement of what users
get (bench/judge.py): a plain classifier that is not ganaug's, trained on the appended folder as
it landed, on the real images alone, and on the folders a user would otherwise train on (real
over-sampled, SMOTE; built here from the same images, to the same sampling_strategy), tested on
the kept-apart images. When the gate closed, the folder it would have appended is judged too, to
see whether closing was right. Intervals: paired bootstrap over test images and seeds
(pipeline/judges/evidence.py). Seeds: the judge's 0..--seeds-1; ganaug's, params' defaults (0).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import judge  # noqa: E402
from bench.datasets import DIGITS_COUNTS, DIGITS_SIZE, TAIL_COUNTS, write_digits_tail, write_tail  # noqa: E402
from ganaug.pipeline.judges import evidence  # noqa: E402
from ganaug.pipeline.judges.arms import fills_with_duplicates, oversample_rows  # noqa: E402
from ganaug.pipeline.judges.gate import cap_synthetic  # noqa: E402
from ganaug.pipeline.store.manifest import read_manifest  # noqa: E402
from ganaug.pipeline.plumbing.params import Params, load_params  # noqa: E402
from ganaug.pipeline.stages import STAGES, run, summarize  # noqa: E402

# name: (writer of <work>/tail and <work>/tail-test, images a class, image size)
BENCHMARKS = {"tail": (write_tail, TAIL_COUNTS, 32), "digits": (write_digits_tail, DIGITS_COUNTS, DIGITS_SIZE)}
COUNTS = TAIL_COUNTS
RAREST = [str(c) for c in np.argsort(TAIL_COUNTS)[:3]]  # the three smallest classes: 9, 8, 7


def tail_params(work: Path, *overrides: str, size: int = 32, test_given: bool = False) -> Params:
    """The params bench/tail.py ran with in `work` (its outputs under work/run; with test_given,
    under work/run-test-given, ganaug given the kept-apart images as its test split)."""
    out = work / ("run-test-given" if test_given else "run")
    raw = given_test_table(work) if test_given else work / "tail"
    paths = [f"paths.{k}={out / v}" for k, v in Params().paths.model_dump().items() if k not in ("raw", "demo")]
    return load_params(None, paths + [f"paths.raw={raw}", f"ingest.size={size}", *overrides])


def given_test_table(work: Path) -> Path:
    """A user who keeps a test set: a table of the long tail's images, split left to ganaug (an
    empty cell), and the kept-apart images as split=test. ganaug then carves no test images out of
    the tail (the GAN keeps them) and its gate judges on 100 a class, the judge's own test images."""
    table = work / "with-test.csv"
    rows = [f"{p.relative_to(work).as_posix()},{p.parent.name}," for p in sorted((work / "tail").glob("*/*.png"))]
    rows += [f"{p.relative_to(work).as_posix()},{p.parent.name},test" for p in sorted((work / "tail-test").glob("*/*.png"))]
    text = "path,label,split\n" + "\n".join(rows) + "\n"
    if not table.exists() or table.read_text() != text:
        table.write_text(text)
    return table


def run_pipeline(params: Params, start: str | None) -> dict:
    names = list(STAGES)
    timings = {}
    for name in names[names.index(start) if start else 0:]:
        t0 = time.perf_counter()
        result = run(name, params)
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {summarize(name, result)} ({timings[name]}s)", flush=True)
    return timings


def describe(params: Params) -> dict:
    reports = Path(params.paths.reports)
    ingest = json.loads((reports / "ingest.json").read_text())
    filt = json.loads((reports / "filter.json").read_text())
    metrics = json.loads((reports / "metrics.json").read_text())
    print(f"\n{'class':>5} {'images':>6} {'train':>5} {'val':>4} {'test':>4} | {'needed':>6} {'generated':>9} "
          f"{'accepted':>8}  rejected (why)")
    for c, n in enumerate(COUNTS):
        k = str(c)
        split = ingest["classes"][k]
        f = filt["classes"].get(k, {})
        if isinstance(f.get("rejected"), dict):  # this code: per reason, in the filter's order
            why = {r: v for r, v in f["rejected"].items() if v}
        else:  # main's filter.json (67044d1): the score, copies and judge counts only
            why = {r: v for r, v in f.items() if r in ("near_copies", "classifier_disagrees")}
            if "passed_score" in f:
                why = {"below_score": f["generated"] - f["passed_score"], **why}
        print(f"{k:>5} {n:>6} {split.get('train', 0):>5} {split.get('val', 0):>4} {split.get('test', 0):>4} | "
              f"{f.get('needed', 0):>6} {f.get('generated', 0):>9} {f.get('accepted', 0):>8}  {why}")
    gate = metrics["gate"]
    print(f"gate: {'PASSED' if gate['passed'] else 'CLOSED'}: {gate['reason']}")
    return {"ingest": ingest["classes"], "filter": filt, "gate": gate, "evaluate": metrics}


def accepted_quality(params: Params, work: Path, test: Path) -> dict:
    """Per class, the accepted images against yardsticks ganaug never fit: label agreement of the
    independent classifier (judge.yardstick), and memorization measured on the class's own
    kept-apart real images: the share of accepted images nearer to one of its training images
    than the nearest 5 % of those unseen real images are."""
    import torch

    from ganaug.pipeline.judges import classifier, quality
    from ganaug.pipeline.store.manifest import label_map_of
    from ganaug.pipeline.store.pixels import Images

    size = params.ingest.size
    prepared = read_manifest(params.paths.prepared)
    names = list(label_map_of(prepared))
    accepted = read_manifest(params.paths.accepted)
    x_fresh, y_fresh, _ = judge.read_folder(test, size, names)
    model = judge.yardstick(work, size, names)
    rows = np.flatnonzero(((prepared["split"] == "train") & (prepared["source"] == "real")).to_numpy())
    train_x = Images(params.paths.prepared, len(prepared), rows)
    train_lab = prepared["label"].iloc[rows].to_numpy()
    out = {}
    for c, name in enumerate(names):
        mine = accepted[accepted["label"] == name]
        if not len(mine):
            continue
        x = torch.from_numpy(np.stack([judge.read_image(Path(params.paths.accepted) / p, size)
                                       for p in mine["path"]])).unsqueeze(1)
        real = train_x.subset(train_lab == name)
        fresh = torch.from_numpy(x_fresh[y_fresh == c]).unsqueeze(1)
        floor = np.quantile(quality.k_nearest(fresh, real)[0][:, 0], 0.05)
        out[name] = {"accepted": len(mine),
                     "label_agreement": round(float((classifier.predict(model, x)[0] == c).mean()), 3),
                     "memorization": round(float((quality.k_nearest(x, real)[0][:, 0] < floor).mean()), 3)}
    return out


def folders(params: Params, raw: Path, test: Path, gate: dict, seed: int, size: int) -> tuple[dict, tuple]:
    """Each training folder the judge compares: name -> (images, labels)."""
    x_real, y_real, names = judge.read_folder(raw, size)
    strategy = params.generate.sampling_strategy
    if isinstance(strategy, dict):
        strategy = {names.index(k): v for k, v in strategy.items()}
    sets = {"real": (x_real, y_real),
            "oversampled": judge.oversampled(x_real, y_real, strategy, seed),
            "smote": judge.smote(x_real, y_real, strategy, seed),
            "appended": judge.read_folder(params.paths.augmented, size, names)[:2]}
    # real + accepted, as evaluate's synthetic arm: what the gate judged (held back when it closed)
    accepted = read_manifest(params.paths.accepted)
    share = gate.get("synthetic_share") or max(params.evaluate.synthetic_shares)
    if len(accepted) and share:
        prepared = read_manifest(params.paths.prepared)
        counts = prepared[prepared["source"] == "real"]["label"].value_counts().to_dict()
        kept = cap_synthetic(accepted, {str(k): int(v) for k, v in counts.items()}, float(share))
        if len(kept):
            x_syn = np.stack([judge.read_image(Path(params.paths.accepted) / p, size) for p in kept["path"]])
            y_syn = np.array([names.index(v) for v in kept["label"]])
            x, y = np.concatenate([x_real, x_syn]), np.concatenate([y_real, y_syn])
            if fills_with_duplicates(params):  # as append would land it: filled with duplicates
                plan = np.bincount(sets["oversampled"][1], minlength=len(names))
                rest = {c: int(plan[c] - n) for c, n in enumerate(np.bincount(y, minlength=len(names)))
                        if plan[c] > n}
                extra = oversample_rows(y_real, rest, seed)
                x, y = np.concatenate([x, x_real[extra]]), np.concatenate([y, y_real[extra]])
            sets["accepted"] = (x, y)
    return sets, judge.read_folder(test, size, names)


def judgement(params: Params, raw: Path, test: Path, gate: dict, seeds: int, confidence: float) -> dict:
    size = params.ingest.size
    preds, counts, curves = {}, {}, {}
    x_test = y_test = names = None
    for seed in range(seeds):
        sets, (x_test, y_test, names) = folders(params, raw, test, gate, seed, size)
        for arm, (x, y) in sets.items():
            model = judge.train_plain(x, y, len(names), seed, watch=(x_test, y_test))
            preds.setdefault(arm, []).append(judge.predict(model, x_test))
            curves.setdefault(arm, []).append(model.curve["macro_f1"])
            counts[arm] = np.bincount(y, minlength=len(names)).tolist()
            epochs = model.curve["epoch"]
    rare = [names.index(c) for c in RAREST]
    boot = evidence.bootstrap(y_test, {a: np.stack(p) for a, p in preds.items()}, len(names), rare)
    print(f"\nplain classifier (bench/judge.py) on {len(y_test)} kept-apart test images, {seeds} seeds; "
          f"{confidence:.0%} intervals")
    print(f"{'folder':<12} {'images':>6} {'macro-F1':>22} {'balanced acc.':>22}  recall of " + ", ".join(RAREST))
    out = {}
    for arm, b in boot.items():
        lo, hi = evidence.interval(b["macro_f1"], confidence)
        rec = {c: round(float(b["recall"][0, names.index(c)]), 3) for c in RAREST}
        out[arm] = {"images": int(sum(counts[arm])), "macro_f1": round(float(b["macro_f1"][0]), 4),
                    # the learning curve (test macro-F1, mean over seeds) after these epochs: flat at the end?
                    "curve": {"epoch": epochs, "macro_f1": [round(float(v), 4) for v in np.mean(curves[arm], 0)]},
                    "macro_f1_interval": [round(float(lo), 4), round(float(hi), 4)],
                    "balanced_accuracy": round(float(b["balanced_accuracy"][0]), 4),
                    "per_class_recall": {n: round(float(b["recall"][0, i]), 3) for i, n in enumerate(names)}}
        lo_b, hi_b = evidence.interval(b["balanced_accuracy"], confidence)
        print(f"{arm:<12} {out[arm]['images']:>6} {b['macro_f1'][0]:>8.4f} [{lo:.4f}, {hi:.4f}] "
              f"{b['balanced_accuracy'][0]:>8.4f} [{lo_b:.4f}, {hi_b:.4f}]  {rec}")
        print(f"{'':<12} learning curve, macro-F1 after epochs {epochs}: {out[arm]['curve']['macro_f1']}")
    for arm in ("appended", "accepted"):
        if arm not in boot:
            continue
        best = np.maximum(boot["oversampled"]["macro_f1"], boot["smote"]["macro_f1"])
        gain = boot[arm]["macro_f1"] - best
        lo, hi = evidence.interval(gain, confidence)
        worse = gain[0] < 0
        out[arm]["gain_over_best_baseline"] = {"gain": round(float(gain[0]), 4),
                                               "interval": [round(float(lo), 4), round(float(hi), 4)]}
        verdict = "beats both" if lo > 0 else ("worse than the best baseline" if worse else "no clear difference")
        print(f"{arm}: macro-F1 gain over the better of over-sampled and SMOTE (per replicate) "
              f"{gain[0]:+.4f} [{lo:+.4f}, {hi:+.4f}]: {verdict}")
    if gate["passed"] and out["appended"]["gain_over_best_baseline"]["gain"] < 0:
        print("GATE ERROR: the gate opened, yet the plain classifier finds the appended folder worse "
              "than the best baseline folder")
    return out


def side_by_side(evaluated: dict, judged: dict):
    """ganaug's own evaluate (its test split) beside the independent judge (kept-apart images)."""
    print(f"\n{'arm':<12} {'evaluate macro-F1':>28} {'judge macro-F1':>28}")
    for arm, folder in (("real", "real"), ("oversampled", "oversampled"), ("smote", "smote"),
                        ("synthetic", "accepted")):
        e, j = evaluated["arms"].get(arm), judged.get(folder)
        show = [f"{d['macro_f1']:.4f} [{d['macro_f1_interval'][0]:.4f}, {d['macro_f1_interval'][1]:.4f}]"
                if d else "-" for d in (e, j)]
        print(f"{arm:<12} {show[0]:>28} {show[1]:>28}")
    gate = evaluated["gate"]
    print(f"evaluate's gate: {'OPEN' if gate['passed'] else 'CLOSED'}, gain {gate['gain']} {gate['interval']} "
          f"over {gate['best_other_arm']}; the judge: real + accepted vs the better baseline "
          f"{judged['accepted']['gain_over_best_baseline'] if 'accepted' in judged else '-'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="keep data and outputs here (default: a temporary folder)")
    ap.add_argument("--from", dest="start", default=None, choices=[*STAGES, "judge"],
                    help="re-run from this stage on (judge: only the judgement, on the folder as it is)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--seeds", type=int, default=3, help="judge classifier seeds")
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--out", default=None, help="write every figure as JSON here")
    ap.add_argument("--test-given", action="store_true",
                    help="give ganaug the kept-apart images as its test split (a table, split=test; the rest of the "
                         "split ganaug's), outputs under <work>/run-test-given: the gate then decides on the judge's "
                         "own test images")
    ap.add_argument("--dataset", default="tail", choices=list(BENCHMARKS),
                    help="tail: Animal-MNIST at 32 px (100 kept-apart test images a class); digits: scikit-learn's "
                         "digits at 16 px (70 a class)")
    args = ap.parse_args()
    global COUNTS, RAREST
    write, COUNTS, size = BENCHMARKS[args.dataset]
    RAREST = [str(c) for c in np.argsort(COUNTS)[:3]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        raw, test = work / "tail", work / "tail-test"
        if not raw.is_dir():
            write(work)
        params = tail_params(work, *args.overrides, size=size, test_given=args.test_given)
        out = Path(params.paths.reports).parent
        timings = run_pipeline(params, args.start) if args.start != "judge" else {}
        figures = describe(params)
        if args.dataset == "tail":  # its yardstick trains on Animal-MNIST's images the benchmark leaves out
            figures["accepted_quality"] = accepted_quality(params, work, test)
            print("accepted images, by yardsticks ganaug never fit (label agreement: judge.yardstick; memorization:"
                  " nearer a training image than the nearest 5% of the class's unseen real images):")
            for name, q in figures["accepted_quality"].items():
                print(f"  class {name}: {q}")
        figures["judge"] = judgement(params, raw, test, figures["gate"], args.seeds, args.confidence)
        side_by_side(figures["evaluate"], figures["judge"])
        figures |= {"timings": timings, "args": vars(args)}
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=1, default=str))
        print(f"\nseconds per stage: {timings}; pictures: {out / 'reports'}")


if __name__ == "__main__":
    main()
