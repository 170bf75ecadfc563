"""A fixed small CNN: the yardstick for evaluate, and the feature space for fidelity.

No Inception weights exist here (no downloads), so fidelity is measured in the
penultimate features of this classifier trained on the real data.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..store.pixels import nchw_as_float, one_thread
from ..plumbing.progress import progress


class SmallCNN(nn.Module):
    """`blocks` BatchNorm blocks (two 3x3 convolutions, then 2x2 max-pooling), channels doubling
    from `width`, global average pooling, a linear head. Two blocks: the yardstick of filter and
    train (`evaluate.width`); three: evaluate's arms (`evaluate.arm_classifier`), ~75k parameters
    at width 16, a classifier of the capacity a user's own stage has at 16-64 px.

    curve: its learning curve on val when it was trained with one (`fit_all(val=...)`), else None.
    """

    def __init__(self, channels: int, n_classes: int, width: int = 32, blocks: int = 2):
        super().__init__()

        def block(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        widths = [channels] + [width * 2 ** i for i in range(blocks)]
        self.features = nn.Sequential(*(block(a, b) for a, b in zip(widths, widths[1:])),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], n_classes)
        self.curve: dict | None = None

    def forward(self, x):
        return self.head(self.features(_channels_last(x)))


@dataclass(frozen=True)
class Member:
    """One classifier to train: its images (NCHW tensor, uint8 or float in [-1, 1], or
    pixels.Images / Stack, read a batch at a time), labels, seed (its initial weights and its
    draws), class-balanced draws or not, its batch transform (None: none) and its steps."""
    x: object
    y: torch.Tensor
    seed: int
    balanced: bool = False
    augment: Callable | None = None
    steps: int | None = None  # its own number of steps (None: fit_all's)


@dataclass(frozen=True)
class Training:
    """How the classifiers of one fit_all train (every member alike)."""
    steps: int                           # each member's steps unless its Member.steps says otherwise
    batch_size: int
    lr: float                            # Adam's peak learning rate, on a one-cycle schedule
    width: int                           # channels of the first BatchNorm block, doubling each block
    blocks: int = 2                      # BatchNorm blocks (SmallCNN)
    device: torch.device | str = "cpu"
    workers: int = 0                     # batch-reading processes (DataLoader workers)


def fit(x, y: torch.Tensor, n_classes: int, training: Training, seed: int, *, balanced: bool = False,
        augment: Callable | None = None) -> SmallCNN:
    """Train for a fixed number of steps (not epochs): a bigger training set gets no extra updates.
    x: an image set (NCHW tensor, uint8 or float in [-1, 1], or pixels.Images / Stack), read a
    batch at a time through a DataLoader: `training.workers` processes read the rows ahead.

    balanced: draw batches class-balanced (random over-sampling, the classic baseline).
    augment: a batch transform (the classic augmentation every arm of evaluate shares), applied
    here, in order, so its seeded random stream does not depend on the number of workers.
    """
    return fit_all([Member(x, y, seed, balanced, augment)], n_classes, training, together=False)[0]


def fit_all(members: list[Member], n_classes: int, training: Training, *, together: bool | None = None,
            desc: str | None = None, val: tuple | None = None, curve_points: int = 0) -> list[SmallCNN]:
    """Train classifiers of one shape, each as `fit` would (its own seed, draws, augmentation and
    steps: `Member.steps`, else `training.steps`).

    together (None: on a GPU): as one network, each member's channels a group of its own
    (`_Together`), so that a step is one launch of every layer for all members instead of one
    per member: a single small CNN fills a fraction of a GPU; members of the same number of
    steps train together. On the CPU one after another: a small CNN's step already fills the
    cores there, and grouped convolutions run no faster than the members' own (bench/
    evaluate_speed.py). The results are the same but for rounding.

    val: (images, labels): each model's learning curve on them, `curve_points` times evenly
    over its training, is left in `model.curve` (step, val loss, accuracy and macro-F1 over the
    classes val holds).
    """
    device = torch.device(training.device)
    together = device.type == "cuda" if together is None else together
    own = [m.steps or training.steps for m in members]
    groups = [[i] for i in range(len(members))] if not together else \
        [[i for i in range(len(members)) if own[i] == s] for s in dict.fromkeys(own)]
    bar = progress(total=sum(own[g[0]] for g in groups), desc=desc, unit="step", disable=desc is None)
    models: list[SmallCNN | None] = [None] * len(members)
    for group in groups:
        trained = _train([members[i] for i in group], n_classes, own[group[0]], training, val=val,
                         curve_points=curve_points, bar=bar)
        for i, m in zip(group, trained):
            models[i] = m
    bar.close()
    return models


def _train(members: list[Member], n_classes: int, steps: int, training: Training, *, val: tuple | None,
           curve_points: int, bar) -> list[SmallCNN]:
    device, batch_size, lr = torch.device(training.device), training.batch_size, training.lr
    models = []
    for m in members:  # each member's initial weights from its own seed, as when trained alone
        torch.manual_seed(m.seed)
        models.append(SmallCNN(m.x.shape[1], n_classes, training.width, training.blocks))
    net = (models[0] if len(models) == 1 else _Together(models)).to(device, memory_format=torch.channels_last)
    # Elementwise, so a member's updates are its own; fused: one kernel for all tensors, not a loop.
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    draws = [_Draws(_weights(m.y, n_classes, m.balanced), batch_size, steps, m.seed) for m in members]
    loader = torch.utils.data.DataLoader(
        _Rows([(m.x, m.y) for m in members]), batch_sampler=_Steps(draws), collate_fn=_as_is,
        num_workers=training.workers, pin_memory=device.type == "cuda", worker_init_fn=one_thread,
        prefetch_factor=4 if training.workers else None, generator=torch.Generator().manual_seed(0))
    # The steps after which the curve is measured: evenly spread, the last one included.
    watch = {max(1, round(steps * (k + 1) / curve_points)) for k in range(curve_points)} if val else set()
    curves = [{"step": [], "val_loss": [], "val_accuracy": [], "val_macro_f1": []} for _ in members]
    net.train()
    for step, (xb, yb) in enumerate(loader, 1):
        # Each member's batch through its own transform, in step order (its seeded stream)
        xb = torch.stack([m.augment(b) if m.augment is not None else b for m, b in zip(members, xb)])
        xb = xb.to(device, non_blocking=True)
        logits = net(xb[0]) if len(models) == 1 else net(xb).transpose(0, 1)  # members x batch x classes
        # The sum of each member's mean loss: every member gets the gradient it would get alone.
        loss = F.cross_entropy(logits.reshape(-1, n_classes), yb.to(device, non_blocking=True).reshape(-1),
                               reduction="sum") / batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step in watch:
            _measure(net, len(models), val, n_classes, step, curves)
        if bar is not None:
            bar.update(1)
    if len(models) > 1:
        net.split_into(models)
    for m, c in zip(models, curves):
        m.curve = c if val else None
    return [m.eval() for m in models]


@torch.no_grad()
def _measure(net: nn.Module, n_members: int, val: tuple, n_classes: int, step: int, curves: list[dict]):
    """One point of each member's learning curve: loss, accuracy and macro-F1 (over the classes
    val holds) on val, in eval mode (BatchNorm's running statistics, as the model will predict)."""
    from sklearn.metrics import f1_score

    x_val, y_val = val
    device = next(net.parameters()).device
    net.eval()
    logits = []
    for i in range(0, len(y_val), 512):
        xb = nchw_as_float(x_val[i:i + 512]).to(device)
        out = net(xb) if n_members == 1 else net(xb.expand(n_members, *xb.shape))  # batch x members x classes
        logits.append(out.float().reshape(len(xb), n_members, n_classes).cpu())
    net.train()
    logits = torch.cat(logits)
    y = y_val.long()
    for k, curve in enumerate(curves):
        pred = logits[:, k].argmax(1).numpy()
        curve["step"].append(step)
        curve["val_loss"].append(round(float(F.cross_entropy(logits[:, k], y)), 4))
        curve["val_accuracy"].append(round(float((pred == y.numpy()).mean()), 4))
        curve["val_macro_f1"].append(round(float(f1_score(y.numpy(), pred, labels=sorted(set(y.tolist())),
                                                           average="macro", zero_division=0)), 4))


def _weights(y: torch.Tensor, n_classes: int, balanced: bool) -> torch.Tensor:
    return (1.0 / torch.bincount(y, minlength=n_classes).clamp(min=1).float())[y] if balanced \
        else torch.ones(len(y))


class _Together(nn.Module):
    """Several SmallCNNs of one shape as one network. A convolution's groups keep each member's
    channels apart, BatchNorm and pooling are per channel, hence per member, and the heads are
    one batched product. Input: members x batch x C x H x W; output: batch x members x classes."""

    def __init__(self, members: list[SmallCNN]):
        super().__init__()
        self.n = len(members)
        self.features = _stacked([m.features for m in members])
        self.head_weight = nn.Parameter(torch.stack([m.head.weight.detach() for m in members]))
        self.head_bias = nn.Parameter(torch.stack([m.head.bias.detach() for m in members]))

    def forward(self, x):
        n, b = x.shape[:2]
        x = x.transpose(0, 1).reshape(b, n * x.shape[2], *x.shape[3:])  # member m: channels m*C..(m+1)*C
        f = self.features(_channels_last(x)).view(b, n, -1)
        return torch.einsum("bmf,mkf->bmk", f, self.head_weight) + self.head_bias

    @torch.no_grad()
    def split_into(self, members: list[SmallCNN]):
        """Each member's trained weights and running statistics back into its own SmallCNN."""
        for name, t in self.features.state_dict().items():
            for m, part in zip(members, _member_parts(t, self.n)):
                m.features.state_dict()[name].copy_(part)
        for i, m in enumerate(members):
            m.head.weight.copy_(self.head_weight[i])
            m.head.bias.copy_(self.head_bias[i])


def _member_parts(t: torch.Tensor, n: int) -> list[torch.Tensor]:
    """A stacked tensor's member slices (channels in member order); a counter is every member's."""
    return [t] * n if t.ndim == 0 else list(t.chunk(n))


def _stacked(layers: list[nn.Module]) -> nn.Module:
    """One layer doing the members' layers side by side, starting from their weights."""
    first, n = layers[0], len(layers)
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*(_stacked([l[i] for l in layers]) for i in range(len(first))))
    if isinstance(first, nn.Conv2d):
        out = nn.Conv2d(n * first.in_channels, n * first.out_channels, first.kernel_size,
                        padding=first.padding, groups=n)
    elif isinstance(first, nn.BatchNorm2d):
        out = nn.BatchNorm2d(n * first.num_features, momentum=first.momentum)
    else:  # ReLU, pooling, Flatten: no weights, per channel already
        return first
    with torch.no_grad():
        for name, t in out.state_dict().items():
            t.copy_(_member_parts(t, n)[0] if t.ndim == 0 else torch.cat([l.state_dict()[name] for l in layers]))
    return out


class _Draws:
    """Each step's batch indices, drawn in order from one seeded generator (in the main process:
    a DataLoader runs its batch sampler there), so workers never change which rows a step sees."""

    def __init__(self, weights: torch.Tensor, batch_size: int, steps: int, seed: int):
        self.weights, self.batch_size, self.steps, self.seed = weights, batch_size, steps, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            yield torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)

    def __len__(self) -> int:
        return self.steps


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC: oneDNN's convolutions and max-pooling at these widths run 1.4-1.8x faster so on the
    CPU than NCHW (bench/evaluate_speed.py); the weights follow (`_train`), the results do not
    change beyond rounding."""
    return x.contiguous(memory_format=torch.channels_last)


class _Steps:
    """Each step's row indices for every member, from the members' own draws."""

    def __init__(self, draws: list[_Draws]):
        self.draws = draws

    def __iter__(self):
        return zip(*self.draws)

    def __len__(self) -> int:
        return len(self.draws[0])


class _Rows(torch.utils.data.Dataset):
    """A step's rows of every member's image set, as [-1, 1] floats (members x batch x C x H x W),
    with their labels (members x batch)."""

    def __init__(self, sets: list[tuple]):
        self.sets = sets

    def __getitems__(self, idx: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.stack([nchw_as_float(x[i]) for (x, _), i in zip(self.sets, idx)]),
                torch.stack([y[i] for (_, y), i in zip(self.sets, idx)]))

    def __len__(self) -> int:
        return len(self.sets[0][1])


def _as_is(batch):
    return batch


def fit_reference(x, y: torch.Tensor, n_classes: int, cfg, seed: int, device: torch.device | str = "cpu",
                  augment: Callable | None = None) -> SmallCNN:
    """The real-data yardstick (class-balanced, evaluate's settings, at least 200 steps): judges
    class agreement in filter (with the classic augmentation there, so that a class of three
    images is learnt as a class) and gives the feature space for train's validation metric. On
    the stage's device: at 300,000 images its 15 epochs are 70,000 steps."""
    steps = max(200, cfg.epochs * math.ceil(len(x) / cfg.batch_size))
    return fit(x, y, n_classes, Training(steps, cfg.batch_size, cfg.lr, cfg.width, device=device), seed,
               balanced=True, augment=augment)


def classic_augment(shift: float, rotate: float, scale: float, hflip: bool, seed: int) -> Callable | None:
    """The augmentation a practitioner applies anyway (albumentations), as a batch transform
    on [-1, 1] tensors; None when every knob is off."""
    import cv2

    from ..store.images import A  # albumentations, imported with its update check off

    transforms = []
    if shift or rotate or scale:
        transforms.append(A.Affine(translate_percent=(-shift, shift), rotate=(-rotate, rotate),
                                   scale=(1 - scale, 1 + scale), border_mode=cv2.BORDER_REFLECT_101, p=0.8))
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if not transforms:
        return None
    pipeline = A.Compose(transforms, seed=seed)

    def apply(x: torch.Tensor) -> torch.Tensor:
        imgs = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        out = np.stack([pipeline(image=img)["image"].reshape(img.shape) for img in imgs])
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    return apply


@torch.no_grad()
def predict(model: SmallCNN, x, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, penultimate features), on the model's device; x as in `fit`."""
    device = next(model.parameters()).device
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(_channels_last(nchw_as_float(x[i:i + batch_size]).to(device)))
        feats.append(f.float().cpu())
        preds.append(model.head(f).argmax(1).cpu())
    if not preds:
        return np.empty(0, dtype=int), np.empty((0, model.head.in_features))
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    # A small ridge keeps sqrtm stable when a set has fewer images than feature dimensions.
    ridge = 1e-6 * np.eye(a.shape[1])

    def cov(x: np.ndarray) -> np.ndarray:  # one image has no spread (np.cov would be NaN)
        return np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]) if len(x) > 1 else np.zeros((x.shape[1],) * 2)

    cov_a, cov_b = cov(a) + ridge, cov(b) + ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
