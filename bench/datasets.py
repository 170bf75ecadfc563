"""Benchmark datasets, written as a `path,label,split` table the way a user would give one.

- demo: the digits demo (`ganaug demo-data`): 3 and 8 cut to ~10 training images, 16 px.
- animal: Animal-MNIST (`pip install --no-deps animal-mnist`; MIT; 10,000 28x28 silhouettes,
  10 classes, shipped in the package as gzip'd pickled numpy arrays). Read with an
  unpickler that admits numpy array reconstruction and nothing else. Made long-tailed:
  classes 7, 8 and 9 keep 20, 10 and 5 training images (3 val each); every class keeps
  100 balanced test images; the others keep 100 val and the rest (800) for training.
- tail: Animal-MNIST as a user's data comes: an ImageFolder with no split column, classes cut
  to 400, 200, 100, 75, 50, 35, 20, 10, 6 and 4 images (class c keeps TAIL_COUNTS[c]), so
  ganaug's own carve-outs are what is tested. 100 test images per class are written apart
  (`<root>/tail-test/<class>/`): ganaug never sees them; bench/tail.py judges with them.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ANIMAL_CUT = {7: 20, 8: 10, 9: 5}
TAIL_COUNTS = (400, 200, 100, 75, 50, 35, 20, 10, 6, 4)
TAIL_TEST = 100
_NUMPY_ONLY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _NUMPY_ONLY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are expected")


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        import animal_mnist
    except ImportError:
        raise SystemExit("Animal-MNIST is not installed: pip install --no-deps animal-mnist") from None
    folder = Path(os.path.dirname(animal_mnist.__file__)) / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz") as f:
        x = _NumpyOnly(f).load()
    with gzip.open(folder / "animal_label_version_3.gz") as f:
        y = _NumpyOnly(f).load()
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and len(x) == len(y)):
        raise SystemExit("Animal-MNIST: unexpected array shapes")
    return x, np.asarray(y, dtype=int)


def write_animal_mnist(dest: Path, seed: int = 0) -> Path:
    x, y = load_animal_mnist()
    rng = np.random.default_rng(seed)
    rows = []
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test, val, train = idx[:100], idx[100:200], idx[200:]
        if cls in ANIMAL_CUT:
            val, train = val[:3], train[:ANIMAL_CUT[cls]]
        for split, members in (("train", train), ("val", val), ("test", test)):
            for i in members:
                rel = f"{cls}/animal-{i:05d}.png"
                (dest / str(cls)).mkdir(parents=True, exist_ok=True)
                Image.fromarray(x[i]).save(dest / rel)
                rows.append({"path": rel, "label": str(cls), "split": split})
    pd.DataFrame(rows).to_csv(dest / "index.csv", index=False)
    return dest / "index.csv"


def tail_split(y: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Animal-MNIST indices of the tail benchmark: "test" (100 a class, kept apart), "user" (the
    user's images, TAIL_COUNTS a class) and "rest" (never in the benchmark: bench/tail_gan.py's
    independent yardstick classifier trains on them)."""
    rng = np.random.default_rng(seed)
    parts = {"test": [], "user": [], "rest": []}
    for cls, n in enumerate(TAIL_COUNTS):
        idx = rng.permutation(np.flatnonzero(y == cls))
        parts["test"].append(idx[:TAIL_TEST])
        parts["user"].append(idx[TAIL_TEST:TAIL_TEST + n])
        parts["rest"].append(idx[TAIL_TEST + n:])
    return {k: np.concatenate(v) for k, v in parts.items()}


def write_tail(dest: Path, seed: int = 0) -> tuple[Path, Path]:
    """(the user's ImageFolder, the kept-apart balanced test folder), both `<class>/*.png`."""
    x, y = load_animal_mnist()
    images, test = dest / "tail", dest / "tail-test"
    split = tail_split(y, seed)
    for cls in range(len(TAIL_COUNTS)):
        for folder, part in ((test, "test"), (images, "user")):
            members = split[part][y[split[part]] == cls]
            (folder / str(cls)).mkdir(parents=True, exist_ok=True)
            for i in members:
                Image.fromarray(x[i]).save(folder / str(cls) / f"animal-{i:05d}.png")
    return images, test


DIGITS_COUNTS = (100, 90, 80, 60, 45, 30, 20, 12, 8, 5)
DIGITS_TEST = 70
DIGITS_SIZE = 16


def write_digits_tail(dest: Path, seed: int = 0) -> tuple[Path, Path]:
    """scikit-learn's digits as a user's long tail (a second benchmark beside Animal-MNIST's): an
    ImageFolder with no split, digit c keeping DIGITS_COUNTS[c] images, upscaled to 16 px as the
    demo does; 70 test images a class written apart (`<dest>/tail-test`), which ganaug never sees.
    Same layout as write_tail, so bench/tail.py runs either."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images, test = dest / "tail", dest / "tail-test"
    for cls, n in enumerate(DIGITS_COUNTS):
        idx = rng.permutation(np.flatnonzero(digits.target == cls))
        for folder, members in ((test, idx[:DIGITS_TEST]), (images, idx[DIGITS_TEST:DIGITS_TEST + n])):
            (folder / str(cls)).mkdir(parents=True, exist_ok=True)
            for i in members:
                img = cv2.resize((digits.images[i] * (255.0 / 16.0)).astype(np.uint8), (DIGITS_SIZE, DIGITS_SIZE),
                                 interpolation=cv2.INTER_CUBIC)
                Image.fromarray(img).save(folder / str(cls) / f"digit-{i:04d}.png")
    return images, test


DATASETS = {
    # name: (overrides that point ganaug at it and size the images)
    "demo": ["ingest.size=16"],
    "animal": ["ingest.size=32"],
    "tail": ["ingest.size=32"],
}


def prepare(name: str, root: Path) -> list[str]:
    """Write the dataset under root; return the --set overrides that use it."""
    from ganaug.pipeline.demo_data import demo_data
    from ganaug.pipeline.plumbing.params import load_params

    if name == "demo":
        demo_data(load_params(None, [f"paths.demo={root / 'demo'}"]))
        raw = root / "demo" / "index.csv"
    elif name == "animal":
        raw = write_animal_mnist(root / "animal")
    elif name == "tail":
        raw, _ = write_tail(root)
    else:
        raise SystemExit(f"unknown dataset {name!r}: {sorted(DATASETS)}")
    return [f"paths.raw={raw}", *DATASETS[name]]
