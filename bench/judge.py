"""An independent judge of what users get: a plain classifier, not ganaug's, trained on a folder.

The user's own training stage reads the ImageFolder ganaug appended and trains on it, often
plainly: shuffled epochs, unweighted cross-entropy, no augmentation. This module is that stage,
with an architecture of its own (a LeNet-style CNN with dropout and no BatchNorm; ganaug's
yardstick is a BatchNorm CNN), so a benchmark cannot be won by tuning ganaug to its own judge.

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
    from ganaug.pipeline.images import convert, resizer

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


class LeNet(nn.Module):
    def __init__(self, n_classes: int, size: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 5, padding=2), nn.Conv2d(32, 64, 5, padding=2)
        self.fc1, self.fc2 = nn.Linear(64 * (size // 4) ** 2, 128), nn.Linear(128, n_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.dropout(F.relu(self.fc1(x.flatten(1))), 0.3, self.training))


def train_plain(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, epochs: int = 8,
                batch_size: int = 64, lr: float = 1e-3) -> LeNet:
    """Shuffled epochs over the folder as it is: what a plain training stage does."""
    torch.manual_seed(seed)
    model = LeNet(n_classes, x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(x).float().div(127.5).sub(1).unsqueeze(1)
    yt = torch.from_numpy(y).long()
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(yt), generator=g).split(batch_size):
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: LeNet, x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(x).float().div(127.5).sub(1).unsqueeze(1)
    return torch.cat([model(b).argmax(1) for b in xt.split(512)]).numpy()


def yardstick(work: Path, size: int, names: list[str]):
    """The tail benchmark's independent class yardstick: ganaug's SmallCNN architecture at width 32,
    trained (balanced, 20 epochs, seed 0) on the Animal-MNIST images the benchmark never uses
    (~500 a class), cached in `work`. It judges label agreement of generated and accepted images."""
    from bench.datasets import load_animal_mnist, tail_split
    from ganaug.pipeline import classifier

    path = Path(work) / f"yardstick-{size}.pt"
    model = classifier.SmallCNN(1, len(names), 32)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x_all, y_all = load_animal_mnist()
    rest = tail_split(y_all)["rest"]
    from ganaug.pipeline.images import convert, resizer

    resize = resizer(size, "stretch")
    x = np.stack([convert(a[:, :, None], resize)[:, :, 0] for a in x_all[rest]])
    y = torch.tensor([names.index(str(v)) for v in y_all[rest]])
    model = classifier.fit(torch.from_numpy(x).unsqueeze(1), y, len(names), 20 * int(np.ceil(len(y) / 64)), 64,
                           2e-3, 32, 0, balanced=True)
    torch.save(model.state_dict(), path)
    return model
