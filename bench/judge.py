"""An independent judge of what users get: a plain classifier, not ganaug's, trained on a folder.

The user's own training stage reads the ImageFolder ganaug appended and trains on it, often
plainly: shuffled epochs, unweighted cross-entropy, no augmentation, to convergence. This module
is that stage, with an architecture and optimizer of its own (`Judge`: strided convolutions, SGD,
cosine; ganaug's evaluate trains max-pooled BatchNorm blocks with Adam), so a benchmark cannot be
won by tuning ganaug to its own judge. Its learning curve is recorded with every fit.

Folders are compared on a test folder ganaug never saw, and the baseline folders a user would
otherwise train on are built here from the same real images: randomly over-sampled and SMOTE
(imbalanced-learn, to the same `sampling_strategy`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def read_folder(root: Path, size: int, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N x size x size uint8 grey, labels, class names) of an ImageFolder, as a user's loader reads it."""
    names = names or sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))
    xs, ys = [], []
    for c, name in enumerate(names):
        for f in sorted((Path(root) / name).glob("*.png")):
            xs.append(read_image(f, size))
            ys.append(c)
    return np.stack(xs), np.asarray(ys), names


def read_image(path: Path, size: int) -> np.ndarray:
    """size x size grey uint8, resized (where it is not that size) exactly as ganaug's ingest
    resizes (`ingest.resize=stretch`), so that every folder compared, and the test images, went
    through the same conversion: the appended folder's real images were prepared that way."""
    from ganaug.pipeline.store.images import convert, resizer

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
    return arr if arr.shape == (size, size) else convert(arr[:, :, None], resizer(size, "stretch"))[:, :, 0]


def oversampled(x: np.ndarray, y: np.ndarray, strategy, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from imblearn.over_sampling import RandomOverSampler

    idx, y_new = RandomOverSampler(sampling_strategy=strategy, random_state=seed).fit_resample(
        np.arange(len(y))[:, None], y)
    return x[idx[:, 0]], y_new


def smote(x: np.ndarray, y: np.ndarray, strategy, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from imblearn.over_sampling import SMOTE

    k = int(min(5, np.bincount(y)[np.bincount(y) > 0].min() - 1))
    flat, y_new = SMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed).fit_resample(
        x.reshape(len(x), -1).astype(np.float32), y)
    return np.clip(np.rint(flat), 0, 255).astype(np.uint8).reshape(-1, *x.shape[1:]), y_new


class Judge(nn.Module):
    """Not ganaug's classifier: strided 3x3 convolutions (no pooling), BatchNorm, a hidden fully
    connected layer with dropout (~0.4M parameters at 32 px, a tenth of the LeNet's arithmetic
    with 5x5 kernels that judged before 2026-12-04), trained with SGD and a cosine schedule where
    ganaug's evaluate uses max-pooled blocks, global pooling and Adam with one cycle."""

    def __init__(self, n_classes: int, size: int):
        super().__init__()

        def down(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.ReLU())

        self.features = nn.Sequential(down(1, 32), down(32, 64), down(64, 128), nn.Flatten())
        side = -(-size // 8)
        self.fc1, self.fc2 = nn.Linear(128 * side * side, 128), nn.Linear(128, n_classes)

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(self.features(x))), 0.3, self.training))


EPOCHS = 30  # passes over the folder: every folder's curve (test_curve) is flat well before


def train_plain(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, epochs: int = EPOCHS,
                batch_size: int = 64, lr: float = 0.05, watch: tuple | None = None) -> "Judge":
    """Shuffled epochs over the folder as it is, what a plain training stage does, to convergence:
    SGD with momentum and a cosine decay over `epochs` passes. watch: (x, y) images to draw the
    learning curve on (macro-F1 after each of a few epochs), left in `model.curve`. Only drawn: no
    choice is made on it (the epochs are fixed), so the kept-apart test images may draw it."""
    from sklearn.metrics import f1_score

    torch.manual_seed(seed)
    model = Judge(n_classes, x.shape[1])
    xt = torch.from_numpy(x).float().div(127.5).sub(1).unsqueeze(1)
    yt = torch.from_numpy(y).long()
    steps = epochs * -(-len(yt) // batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    at = {max(1, round(epochs * k / 6)) for k in range(1, 7)}
    model.curve = {"epoch": [], "macro_f1": []}
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(yt), generator=g).split(batch_size):
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if watch is not None and epoch in at:
            pred = predict(model, watch[0])
            model.curve["epoch"].append(epoch)
            model.curve["macro_f1"].append(round(float(f1_score(watch[1], pred, average="macro")), 4))
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    was = model.training
    model.eval()
    xt = torch.from_numpy(x).float().div(127.5).sub(1).unsqueeze(1)
    out = torch.cat([model(b).argmax(1) for b in xt.split(512)]).numpy()
    model.train(was)
    return out


def yardstick(work: Path, size: int, names: list[str]):
    """The tail benchmark's independent class yardstick: ganaug's SmallCNN architecture at width 32,
    trained (balanced, 20 epochs, seed 0) on the Animal-MNIST images the benchmark never uses
    (~500 a class), cached in `work`. It judges label agreement of generated and accepted images."""
    from bench.datasets import load_animal_mnist, tail_split
    from ganaug.pipeline.judges import classifier

    path = Path(work) / f"yardstick-{size}.pt"
    model = classifier.SmallCNN(1, len(names), 32)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x_all, y_all = load_animal_mnist()
    rest = tail_split(y_all)["rest"]
    from ganaug.pipeline.store.images import convert, resizer

    resize = resizer(size, "stretch")
    x = np.stack([convert(a[:, :, None], resize)[:, :, 0] for a in x_all[rest]])
    y = torch.tensor([names.index(str(v)) for v in y_all[rest]])
    model = classifier.fit(torch.from_numpy(x).unsqueeze(1), y, len(names),
                           classifier.Training(20 * int(np.ceil(len(y) / 64)), 64, 2e-3, 32), 0, balanced=True)
    torch.save(model.state_dict(), path)
    return model
