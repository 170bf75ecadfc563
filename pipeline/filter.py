"""filter: keep candidates that look real, are what they claim, are no copies, and differ.

Four tests (TESTS, in this order), kept apart, so that none of them rewards copying the few images
a rare class has. A candidate is accepted when, in seed order (not best-first, which would narrow
diversity):
1. realness (filter.mode): D's class-free realness term (the projection discriminator's logit
   minus its class term; see gan.Discriminator.terms) passes the class's threshold:
   - quantile: the filter.quantile-th quantile of that term on the class's held-out real (val)
     images. A class with fewer than filter.min_val_per_class val images (a tiny class gives
     none) borrows: its threshold is shrunk towards the same quantile over every class's val
     images, weighted by how many it has. D's class term is left out: for a class of a few
     images it has seen hundreds of times, it scores "is it one of those", so new, good images
     fall below the very images a copy would match;
   - absolute: one filter.threshold for every class; none: no threshold (the ablation);
2. novelty (filter.reject_copies): it is not within the class's copy radius of a real training
   image of its class: the pooled filter.copy_quantile of unseen real images' distance to the
   training images of their class, cut to this class's size, in units of each class's scale
   (quality.copy_radii), so a class of two images is judged on a scale drawn from all classes,
   not from its one pair;
3. class (filter.require_agreement): a classifier trained on the real train images (with
   evaluate's classic augmentation, so that a class of three images is a class, not three
   images) assigns it to its class;
4. (filter.dedupe) it is not within that radius of an image accepted before it.
Classes short of their target (the plan's final counts, as in generate) get more rounds, seeds
continuing where they stopped, until filter.max_rounds; a class whose acceptance rate falls below
filter.min_acceptance stops (hopeless: more candidates would burn compute for nothing) and the
report says so. reports/filter_rejected.png shows, per class, what each test rejected (each
candidate counted once, under the first test it fails, in this order).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .judges import classifier, quality
from .plumbing.errors import DataError
from .store.files import atomic_dir, write_csv, write_json
from .store.images import load_tensor, to_uint8
from .store.manifest import (augmented_counts, label_map_of, make_manifest, needed_per_class, read_manifest,
                             write_manifest)
from .plumbing.params import Params, device as params_device
from .store.pixels import Images, PixelWriter, check_format, nhwc_to_float, open_pixels, part_file, read_prepared
from .plumbing.plots import class_grid, notice, score_histograms
from .plumbing.progress import progress
from .store.provenance import check_made_from, identity
from .training.sampler import Sampler, seed_base, seeds_for, write_images

MIN_JUDGED = 50     # candidates of a class seen before its acceptance rate may call it hopeless
SCORE_CHUNK = 4096  # val images scored at once (a multiple of gan.score's batch: the same batches)


def _real(prepared: pd.DataFrame, split: str) -> np.ndarray:
    return np.flatnonzero(((prepared["split"] == split) & (prepared["source"] == "real")).to_numpy())


def thresholds_for(params: Params, sampler: Sampler, prepared: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """(threshold per class, real val rows with their d_score)."""
    cfg = params.filter
    at = _real(prepared, "val")
    val = prepared.iloc[at].copy()
    images = Images(params.paths.prepared, len(prepared), at)  # read a chunk at a time
    y = [sampler.label_map[v] for v in val["label"]]
    val["d_score"] = np.concatenate([sampler.score(images[i:i + SCORE_CHUNK].permute(0, 2, 3, 1).numpy(),
                                                   y[i:i + SCORE_CHUNK]) for i in range(0, len(at), SCORE_CHUNK)]
                                    or [np.zeros(0)])
    labels = list(sampler.label_map)
    if cfg.mode == "absolute":
        return {k: cfg.threshold for k in labels}, val
    if cfg.mode == "none" or not len(val):
        return {k: -math.inf for k in labels}, val
    pooled = float(np.quantile(val["d_score"], cfg.quantile))
    thresholds = {}
    for k in labels:
        own = val.loc[val["label"] == k, "d_score"]
        weight = min(1.0, len(own) / cfg.min_val_per_class)
        thresholds[k] = weight * float(np.quantile(own, cfg.quantile)) + (1 - weight) * pooled if len(own) else pooled
    return thresholds, val


def reference_judge(params: Params, prepared: pd.DataFrame, label_map: dict[str, int]) -> classifier.SmallCNN | None:
    """The classifier of the agreement guard, trained on the real train images (read a batch
    at a time) with evaluate's classic augmentation; None when filter.require_agreement is off."""
    if not params.filter.require_agreement:
        return None
    at = _real(prepared, "train")
    x = Images(params.paths.prepared, len(prepared), at)
    y = torch.tensor([label_map[v] for v in prepared["label"].iloc[at]])
    device = params_device("train.device", params.train.device)  # trained there, used on the CPU (and on Dask workers)
    aug = params.evaluate.augment
    augment = classifier.classic_augment(aug.shift, aug.rotate, aug.scale, aug.hflip, params.evaluate.seed)
    return classifier.fit_reference(x, y, len(label_map), params.evaluate, params.evaluate.seed, device,
                                    augment=augment).cpu()


class Guard:
    """One class's guards' state: its real training images (left on disk), its copy radius, the
    agreement judge (or None), its realness threshold, and what it has accepted so far."""

    def __init__(self, params: Params, real: Images, index: int, judge: classifier.SmallCNN | None,
                 radius: float, threshold: float = -math.inf):
        self.params, self.real, self.index, self.judge = params, real, index, judge
        self.radius, self.threshold = radius, threshold
        self.accepted: np.ndarray | None = None  # uint8 NHWC, in acceptance order
        self.room = 0                            # images still to accept this round

    def check(self, imgs: np.ndarray) -> pd.DataFrame:
        """Each per-image test (one column per reason) on uint8 NHWC candidates of the class, each
        on all of them (the filter runs them in turn, each on what passed the ones before)."""
        return pd.DataFrame({t.reason: t.check(self, None, imgs) if t.on(self.params) else np.zeros(len(imgs), bool)
                             for t in TESTS if t.kind == "image"})

    def distinct(self, imgs: np.ndarray, limit: int, prior: np.ndarray | None = None) -> list[int]:
        """Indices (in order) of images kept greedily: none within the class's copy radius of one
        kept before it or of an image accepted earlier (prior). A block of candidates at a
        time: one distance matrix against what is kept, one within the block, then the greedy
        pass over the block's rows (the kept ones fill a preallocated buffer)."""
        radius = self.radius
        far = np.ones(len(imgs), dtype=bool)  # from every image accepted in earlier rounds
        for i in range(0, len(imgs) if prior is not None else 0, quality.CHUNK):
            x = nhwc_to_float(imgs[i:i + quality.CHUNK]).flatten(1)
            for j in range(0, len(prior), quality.BLOCK):
                near = torch.cdist(x, nhwc_to_float(prior[j:j + quality.BLOCK]).flatten(1)).min(1).values < radius
                far[i:i + len(x)] &= ~near.numpy()
        pool = torch.empty(min(limit, len(imgs)), int(np.prod(imgs.shape[1:])))
        kept: list[int] = []
        candidates = np.flatnonzero(far)
        for b in range(0, len(candidates), quality.CHUNK):
            if len(kept) >= limit:
                break
            block = candidates[b:b + quality.CHUNK]
            x = nhwc_to_float(imgs[block]).flatten(1)
            ok = (torch.cdist(x, pool[:len(kept)]).min(1).values >= radius).numpy() if kept \
                else np.ones(len(block), dtype=bool)
            within = torch.cdist(x, x).numpy()
            chosen: list[int] = []
            for r in np.flatnonzero(ok):
                if len(kept) + len(chosen) >= limit:
                    break
                if not chosen or within[r, chosen].min() >= radius:
                    chosen.append(r)
            pool[len(kept):len(kept) + len(chosen)] = x[chosen]
            kept += block[chosen].tolist()
        return kept


def _low_realness(g: Guard, rows: pd.DataFrame, imgs) -> np.ndarray:
    return ~(rows["d_score"].to_numpy() >= g.threshold)  # a NaN score is no pass


def _near_copy(g: Guard, rows, imgs: np.ndarray) -> np.ndarray:
    return quality.near_copies(g.real, torch.from_numpy(imgs).permute(0, 3, 1, 2), g.radius)


def _wrong_class(g: Guard, rows, imgs: np.ndarray) -> np.ndarray:
    if g.judge is None or not len(imgs):
        return np.zeros(len(imgs), dtype=bool)
    return classifier.predict(g.judge, torch.from_numpy(imgs).permute(0, 3, 1, 2))[0] != g.index


def _duplicate(g: Guard, rows, imgs: np.ndarray) -> np.ndarray:
    """Within the copy radius of an image kept before it (this round's or an earlier one's).
    Greedy in seed order until the round's room is filled: those after the last one kept are
    neither kept nor rejected (not needed), and the first `room` survivors are what is kept."""
    chosen = g.distinct(imgs, g.room, g.accepted)
    examined = chosen[-1] + 1 if len(chosen) == g.room and chosen else len(imgs)
    dup = np.zeros(len(imgs), dtype=bool)
    dup[np.setdiff1d(np.arange(examined), chosen)] = True
    return dup


@dataclass(frozen=True)
class Test:
    """One of the filter's tests: what it rejects is counted under `reason`; `switch` is the
    filter param that turns it off (None: always on; realness is off with filter.mode=none, its
    threshold then -inf). kind: "score" reads generate's score, "image" judges each image alone,
    "set" judges an image against those kept before it."""

    reason: str
    switch: str | None
    kind: Literal["score", "image", "set"]
    check: Callable[[Guard, pd.DataFrame | None, np.ndarray | None], np.ndarray]  # True: rejected

    def on(self, params: Params) -> bool:
        return self.switch is None or getattr(params.filter, self.switch)

    @property
    def pixels(self) -> bool:
        return self.kind != "score"


# In the order they run: each candidate is judged by the tests it reaches and counted once,
# under the first it fails. The report's counts, filter_rejected.png and the flow's table all
# come from this list, so a test cannot be counted without being applied.
TESTS = (
    Test("low_realness", None, "score", _low_realness),
    Test("near_copy", "reject_copies", "image", _near_copy),
    Test("wrong_class", "require_agreement", "image", _wrong_class),
    Test("duplicate", "dedupe", "set", _duplicate),
)


def _check_order(tests: tuple[Test, ...]) -> tuple[Test, ...]:
    """The order the tests run in must be: reading generate's scores, then judging each image
    alone, then judging it against the images kept before it. A set test ahead of another would
    keep images that a later test throws away, and under-fill their class: refused at import."""
    ranks = [("score", "image", "set").index(t.kind) for t in tests]
    if ranks != sorted(ranks):
        raise RuntimeError(f"filter.TESTS out of order: {[(t.reason, t.kind) for t in tests]}; a 'set' test "
                           "must run after every 'image' test, and those after the 'score' ones")
    return tests


_check_order(TESTS)
REASONS = tuple(t.reason for t in TESTS)
GUARDS_OFF = {t.switch: False for t in TESTS if t.switch}  # realness alone
ACCEPT_ALL = {"mode": "none", **GUARDS_OFF}                 # no test: what generate made (the ablation)


@dataclass
class ClassJob:
    """One class's share of the filter, the unit of work a worker takes: classes are independent
    (a class's rounds and its dedupe are sequential, so a class is not split further)."""

    label: str
    index: int                 # its place in the plan: of its rows in the manifest and of its pixel part
    needed: int
    threshold: float           # realness
    radius: float              # near copy
    candidates: pd.DataFrame   # its first-round candidates (generate's rows; _row: the image's in pixels.u8)
    real: Images               # its real training images (a worker maps the pixel array itself)
    n_candidates: int          # rows of generate's pixel array


EXAMPLES = 8  # rejected images kept per class and reason, for reports/filter_rejected.png
REJECTED_CLASSES = 16  # classes that picture shows (the smallest): a row per reason each


@dataclass
class ClassResult:
    label: str
    seen: pd.DataFrame         # every candidate scored and checked, with why it was rejected ("" if not)
    accepted: pd.DataFrame     # manifest rows of the accepted images, written to the folder
    rounds: int
    hopeless: str | None
    rejected: dict[str, np.ndarray]  # a few uint8 images per reason


def filter_class(params: Params, job: ClassJob, label_map: dict[str, int], judge, folder: str | Path,
                 sampler: Sampler | None = None) -> ClassResult:
    """All rounds of one class: check generate's candidates, top up with fresh seeds while short,
    write the accepted images (PNGs, and their pixels as a part the stage joins) into `folder`.
    A worker process loads the sampler itself; one process passes the one it has."""
    cfg, k, folder = params.filter, job.label, Path(folder)
    sampler = sampler or Sampler.load(params, label_map)
    guard = Guard(params, job.real, label_map[k], judge, job.radius, job.threshold)
    passes = _Rounds(params, job, guard)
    passes.take(job.candidates, None)
    rounds, hopeless = 1, None
    for r in range(2, cfg.max_rounds + 1):
        missing = job.needed - len(passes.accepted)
        if missing <= 0:
            break
        rate = len(passes.accepted) / max(1, len(passes.seen))
        if len(passes.seen) >= MIN_JUDGED and rate < cfg.min_acceptance:
            hopeless = (f"acceptance rate {rate:.1%} after {len(passes.seen)} candidates is below "
                        f"filter.min_acceptance={cfg.min_acceptance:.1%}; stopped generating")
            break
        n = min(math.ceil(missing / max(rate, cfg.min_acceptance, 0.05) * 1.2), 20 * missing)
        # Continue after the last seed tried, so no image is generated twice.
        start = int(passes.seen["seed"].max()) + 1 - seed_base(params, k, label_map) if len(passes.seen) else 0
        passes.take(*sampler.synthesize(k, seeds_for(params, k, label_map, start, n)))
        rounds = r
    rate = len(passes.accepted) / max(1, len(passes.seen))
    if hopeless is None and len(passes.accepted) < job.needed and rate < cfg.min_acceptance:  # whatever the round
        hopeless = f"acceptance rate {rate:.1%} is below filter.min_acceptance={cfg.min_acceptance:.1%}"

    accepted = passes.accepted.drop(columns=["rejected", "_row"], errors="ignore")
    if len(accepted):
        accepted = write_images(accepted, guard.accepted, folder)
        part_file(folder, job.index).write_bytes(np.ascontiguousarray(guard.accepted).tobytes())
    examples = {r: np.concatenate(v) for r, v in passes.rejected.items() if v}
    return ClassResult(k, passes.seen, accepted, rounds, hopeless, examples)


class _Rounds:
    """One class's candidates through the tests, round after round: what was seen (and why it was
    rejected), what was accepted, a few rejected images per reason."""

    def __init__(self, params: Params, job: ClassJob, guard: Guard):
        self.job, self.guard = job, guard
        self.tests = [t for t in TESTS if t.on(params)]
        self.cand_dir = Path(params.paths.candidates)
        self.seen = job.candidates.head(0)
        self.accepted = job.candidates.head(0)
        self.rejected: dict[str, list[np.ndarray]] = {r: [] for r in REASONS}
        self._candidates = None  # generate's one pixel array, mapped once a test first looks at pixels

    def load(self, rows: pd.DataFrame) -> np.ndarray:
        if self._candidates is None:
            # filter_candidates verified the array before handing out the classes' jobs
            self._candidates = open_pixels(self.cand_dir, self.job.n_candidates, "generate", verify=False)
        return np.asarray(self._candidates[rows["_row"].to_numpy()])

    def keep_examples(self, reason: str, imgs: np.ndarray | Callable[[], np.ndarray]):
        room = EXAMPLES - sum(len(a) for a in self.rejected[reason])
        if room > 0:
            imgs = imgs() if callable(imgs) else imgs
            if len(imgs):
                self.rejected[reason].append(imgs[:room])

    def take(self, rows: pd.DataFrame, imgs: np.ndarray | None):
        """Run the tests over one round's candidates, each on those that passed the ones before
        (seeds above every earlier round's, so taking them in seed order after the earlier
        accepted ones is the same greedy pass over all). imgs None: generate's first round, read
        from the candidates folder only once a test looks at pixels, and only the survivors."""
        guard = self.guard
        rows = rows.sort_values("seed", kind="stable").reset_index(drop=True)
        why = np.full(len(rows), "", dtype=object)
        alive = np.arange(len(rows))  # the rows still in, and `imgs` their pixels (or None)
        guard.room = self.job.needed - len(self.accepted)
        for test in self.tests:
            if not len(alive):
                break
            if test.pixels and imgs is None:
                imgs = self.load(rows.iloc[alive])
            out = test.check(guard, rows.iloc[alive], imgs)
            why[alive[out]] = test.reason
            if out.any():
                failed = alive[out]
                self.keep_examples(test.reason, imgs[out] if imgs is not None else
                                   lambda: self.load(rows.iloc[failed].head(EXAMPLES)))
            alive = alive[~out]
            imgs = imgs[~out] if imgs is not None else None
        kept = alive[:guard.room]
        if len(kept):
            new = imgs[:len(kept)] if imgs is not None else self.load(rows.iloc[kept])
            self.accepted = pd.concat([self.accepted, rows.iloc[kept]], ignore_index=True)
            guard.accepted = new if guard.accepted is None else np.concatenate([guard.accepted, new])
        rows = rows.assign(rejected=why.astype(str))
        self.seen = pd.concat([self.seen, rows], ignore_index=True) if len(self.seen) else rows


def in_process(params: Params, jobs: list[ClassJob], shared: tuple, folder: Path, sampler: Sampler) -> list[ClassResult]:
    return [filter_class(params, job, *shared, folder, sampler)
            for job in progress(jobs, desc="filter", unit="class", leave=False)]


RunParts = Callable[[Params, list[ClassJob], tuple, Path, Sampler], list[ClassResult]]


def filter_candidates(params: Params, run_parts: RunParts = in_process) -> dict:
    """run_parts runs the classes' jobs (filter_class(params, job, label_map, judge, folder)) and
    returns their results in job order (the Prefect flow passes one that maps them over Dask
    workers, which load the checkpoint themselves: stages.Parts)."""
    prepared = read_prepared(params)
    cand_dir = Path(params.paths.candidates)
    cand = read_manifest(cand_dir)
    label_map = label_map_of(prepared)
    unknown = set(cand["label"]) - set(label_map)
    if unknown:
        raise DataError(f"{cand_dir}: candidates for classes not in the data: {sorted(unknown)}")
    need = needed_per_class(augmented_counts(prepared), params.generate.sampling_strategy)
    sampler = Sampler.load(params, label_map)
    stale = set(cand["checkpoint"].dropna()) - {sampler.ckpt_id}
    if stale:
        raise DataError(f"{cand_dir}: candidates come from another checkpoint than {params.paths.model}; "
                        "re-run `ganaug generate`")
    made_from = {"paths.prepared": identity(params.paths.prepared), "checkpoint": sampler.ckpt_id}
    check_made_from(cand_dir, made_from, rerun="generate")
    thresholds, real_val = thresholds_for(params, sampler, prepared)
    radii, novelty = quality.class_copy_radii(params.paths.prepared, prepared, label_map, params.filter.copy_quantile)
    judge = reference_judge(params, prepared, label_map)
    train_rows = _real(prepared, "train")
    real = Images(params.paths.prepared, len(prepared), train_rows)
    train_labels = prepared["label"].iloc[train_rows].to_numpy()
    check_format(cand_dir, params.ingest.size, params.ingest.channels, "generate")
    open_pixels(cand_dir, len(cand), "generate")  # all there, or the error now, not in a worker
    cand = cand.assign(_row=np.arange(len(cand)))  # each candidate's image in pixels.u8
    jobs = [ClassJob(k, i, n, thresholds[k], radii[k], cand[cand["label"] == k].reset_index(drop=True),
                     real.subset(train_labels == k), len(cand))
            for i, (k, n) in enumerate(need.items())]

    made_by = {"stage": "filter", "inputs": {**made_from, "paths.candidates": identity(cand_dir)}}
    with atomic_dir(params.paths.accepted, made_by=made_by) as tmp:
        results = run_parts(params, jobs, (label_map, judge), tmp, sampler)
        # One manifest and one pixel array, in job order, from the classes' parts.
        _, c, h, w = real.shape
        pixels = PixelWriter(tmp, (h, w, c))
        for job, result in zip(jobs, results):
            if len(result.accepted):
                pixels.extend_from(part_file(tmp, job.index))
        pixels.close()
        parts = [r.accepted for r in results]
        kept = make_manifest(pd.concat(parts, ignore_index=True) if parts else [])
        write_manifest(kept, tmp)

    calibration = {"realness": _realness_calibration(params, real_val, list(label_map)), "novelty": novelty,
                   "radius": {k: round(radii[k], 4) for k in label_map}}
    report = _report(params, need, {r.label: r for r in results}, thresholds, calibration)
    _pictures(params, prepared, need, results, real_val, thresholds, kept)
    return report


def _pictures(params: Params, prepared: pd.DataFrame, need: dict, results: list, real_val: pd.DataFrame,
              thresholds: dict, kept: pd.DataFrame):
    """What the filter did, to look at: score histograms, the accepted images, and per class the
    first few each test rejected (or a notice saying why there is nothing to show)."""
    seen = {r.label: r.seen for r in results}
    reports = Path(params.paths.reports)
    if need:
        score_histograms(pd.concat(seen.values(), ignore_index=True), real_val,
                         {k: thresholds[k] for k in need}, reports / "filter_scores.png")
    else:
        notice(reports / "filter_scores.png", "no class needs synthetic images")
    if len(kept):
        _accepted_grid(params, kept)
    else:
        notice(reports / "accepted_samples.png", "no synthetic image passed the filter")
    # The classes with the fewest real images first, where a filter goes wrong most easily.
    shown = sorted(results, key=lambda r: (augmented_counts(prepared).get(r.label, 0), r.label))[:REJECTED_CLASSES]
    examples = {f"{r.label}: {reason}": imgs for r in shown for reason, imgs in r.rejected.items()}
    if examples:
        more = f" ({REJECTED_CLASSES} smallest classes of {len(results)})" if len(results) > REJECTED_CLASSES else ""
        class_grid(examples, reports / "filter_rejected.png",
                   f"rejected candidates: per class, the first few each test rejected{more}")
    else:
        notice(reports / "filter_rejected.png", "the filter rejected no candidate")


def _realness_calibration(params: Params, real_val: pd.DataFrame, labels: list[str]) -> dict:
    """Per class, how its realness threshold was placed: from how many of its own val images."""
    own = real_val["label"].value_counts()
    m = params.filter.min_val_per_class
    return {k: {"val_images": int(own.get(k, 0)), "own_weight": round(min(1.0, own.get(k, 0) / m), 3)}
            for k in labels}


def _report(params, need, results: dict[str, ClassResult], thresholds, calibration) -> dict:
    classes = {}
    for k in need:
        s, acc = results[k].seen, results[k].accepted
        why = s["rejected"].value_counts() if len(s) else pd.Series(dtype=int)
        own = calibration["realness"][k]
        classes[k] = {
            "needed": need[k], "generated": len(s),
            "rejected": {r: int(why.get(r, 0)) for r in REASONS},
            "accepted": len(acc),
            "acceptance_rate": round(len(acc) / len(s), 4) if len(s) else None,
            "threshold": None if math.isinf(thresholds[k]) else round(thresholds[k], 5),
            "threshold_from": (f"filter.mode={params.filter.mode}" if params.filter.mode != "quantile" else
                               "no val image in any class: realness not checked" if math.isinf(thresholds[k]) else
                               "pooled val images of every class" if own["own_weight"] == 0 else
                               f"{own['val_images']} own val images (weight {own['own_weight']}), rest pooled"
                               if own["own_weight"] < 1 else f"{own['val_images']} own val images"),
            "copy_radius": calibration["radius"][k],
            "rounds": results[k].rounds, "reached_target": len(acc) >= need[k],
            "hopeless": results[k].hopeless,
        }
    total_seen = sum(c["generated"] for c in classes.values())
    report = {
        "mode": params.filter.mode,
        "quantile": params.filter.quantile if params.filter.mode == "quantile" else None,
        "accepted": sum(c["accepted"] for c in classes.values()),
        "needed": sum(need.values()),
        "acceptance_rate": round(sum(c["accepted"] for c in classes.values()) / total_seen, 4) if total_seen else None,
        "hopeless": sorted(k for k in classes if classes[k]["hopeless"]),
        "novelty": calibration["novelty"],
        "classes": classes,
    }
    reports = Path(params.paths.reports)
    write_json(reports / "filter.json", report)
    write_csv(pd.DataFrame(class_table(report)), reports / "filter_classes.csv")
    return report


def class_table(report: dict) -> list[dict]:
    """A row a class, the rejections a column a test: filter_classes.csv and the Prefect table."""
    return [{"label": k, **{c: v for c, v in row.items() if c != "rejected"},
             **{f"rejected_{r}": n for r, n in row["rejected"].items()}}
            for k, row in report["classes"].items()]


def _accepted_grid(params: Params, kept: pd.DataFrame, per_class: int = 8):
    root = Path(params.paths.accepted)
    rows = {}
    for label, group in kept.groupby("label"):
        x = load_tensor([root / p for p in group["path"].head(per_class)], params.ingest.channels)
        rows[str(label)] = to_uint8(x)
    class_grid(rows, Path(params.paths.reports) / "accepted_samples.png",
               "accepted synthetic images: one row per class")


def summarize(r: dict) -> str:
    rates = {k: c["acceptance_rate"] for k, c in r["classes"].items()}
    hopeless = f"; HOPELESS, stopped generating for {r['hopeless']}" if r.get("hopeless") else ""
    return f"accepted {r['accepted']}/{r['needed']} needed; acceptance per class {rates}{hopeless}"
