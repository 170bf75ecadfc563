"""Evaluate and filter read images a block at a time: the block-wise pieces equal the
whole-set computations they replace (imbalanced-learn's SMOTE, all-pairs nearest neighbours)."""
import numpy as np
import pytest
import torch

from ganaug.pipeline.judges import quality
from ganaug.pipeline.store.pixels import Images, PixelWriter, Stack
from ganaug.pipeline.judges.smote import Smote


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks far smaller than the sets, so every merge across blocks is exercised."""
    monkeypatch.setattr(quality, "CHUNK", 7)
    monkeypatch.setattr(quality, "BLOCK", 11)


def _pixel_folder(tmp_path, imgs: np.ndarray):
    writer = PixelWriter(tmp_path, imgs.shape[1:])
    writer.extend(imgs)
    writer.close()
    return Images(tmp_path, len(imgs))


def _imbalanced(seed=0):
    rng = np.random.default_rng(seed)
    counts = [40, 9, 4, 23]
    imgs = rng.integers(0, 256, (sum(counts), 6, 5, 3), dtype=np.uint8)
    y = torch.from_numpy(np.repeat(np.arange(4), counts))
    perm = torch.from_numpy(rng.permutation(len(y)))
    return imgs[perm.numpy()], y[perm]


@pytest.mark.parametrize("seed", [0, 3])
def test_smote_rows_equal_imbalanced_learns_smote_bit_for_bit(tmp_path, small_blocks, seed):
    from imblearn.over_sampling import SMOTE

    imgs, y = _imbalanced(seed)
    x = _pixel_folder(tmp_path, imgs)
    flat = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0).flatten(1).numpy()
    want_x, want_y = SMOTE(k_neighbors=3, random_state=seed).fit_resample(flat, y.numpy())

    got_x, got_y = Smote(x, y).resample(seed)
    assert isinstance(got_x, Stack) and len(got_x) == len(want_x)   # rows, not a float copy of the set
    assert torch.equal(got_y, torch.from_numpy(want_y))
    # k = 3 (the smallest class has 4 images), made in shuffled batches of any size.
    order = np.random.default_rng(1).permutation(len(want_x))
    made = torch.cat([got_x[order[i:i + 13]] for i in range(0, len(order), 13)])
    assert torch.equal(made.flatten(1), torch.from_numpy(want_x[order]))


def test_smote_leaves_a_set_with_a_single_image_class_alone():
    x = torch.zeros(5, 1, 2, 2, dtype=torch.uint8)
    y = torch.tensor([0, 0, 0, 0, 1])
    assert Smote(x, y).resample(0) == (x, y)


def test_block_wise_nearest_neighbours_equal_all_pairs(small_blocks):
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 256, (30, 1, 4, 4), dtype=np.uint8))
    b = torch.cat([a[:5], torch.from_numpy(rng.integers(0, 256, (25, 1, 4, 4), dtype=np.uint8))])
    fa, fb = [(t.float() / 127.5 - 1).flatten(1).double() for t in (a, b)]
    d = torch.cdist(fa, fb).numpy()
    dist, at = quality.k_nearest(a, b, 4)
    assert np.array_equal(dist, np.sort(d, axis=1)[:, :4]) and np.array_equal(at, np.argsort(d, axis=1, kind="stable")[:, :4])
    no_zero = np.where(d == 0, np.inf, d)
    assert np.array_equal(quality._nearest(a, b, skip_zero=True), no_zero.min(axis=1))
    assert quality.nearest_pair(b) == np.where(torch.cdist(fb, fb).numpy() == 0, np.inf, torch.cdist(fb, fb).numpy()).min()


def test_images_read_only_the_rows_asked_for_and_stack_as_one(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (9, 4, 4, 3), dtype=np.uint8)
    x = _pixel_folder(tmp_path, imgs)
    part = x.subset(np.array([7, 2, 5]))
    assert part.shape == (3, 3, 4, 4)
    assert torch.equal(part[[2, 0]], torch.from_numpy(imgs[[5, 7]]).permute(0, 3, 1, 2))
    assert torch.equal(part[1:], torch.from_numpy(imgs[[2, 5]]).permute(0, 3, 1, 2))
    floats = torch.full((2, 3, 4, 4), 0.5)
    both = Stack(part, floats)
    got = both[[4, 0, 3]]
    assert got.dtype == torch.float32 and torch.equal(got[0], floats[1]) and torch.equal(got[2], floats[0])
    assert torch.equal(got[1], torch.from_numpy(imgs[7]).permute(2, 0, 1).float() / 127.5 - 1)
    import pickle

    again = pickle.loads(pickle.dumps(part))  # a worker maps the file itself
    assert again._pixels is None and torch.equal(again[:], part[:])


def test_classifier_trains_alike_from_disk_with_reader_processes_and_from_memory(tmp_path):
    """The evaluate classifier's batches: rows of the pixel array read by 0 or 2 worker processes,
    or an in-memory tensor, give the same weights (augmentation on: its seeded stream runs in
    the main process, in step order)."""
    from ganaug.pipeline.judges import classifier

    imgs, y = _imbalanced()
    x = _pixel_folder(tmp_path, imgs)
    in_memory = torch.from_numpy(imgs).permute(0, 3, 1, 2)

    def weights(images, workers):
        augment = classifier.classic_augment(0.1, 10.0, 0.1, False, seed=3)
        model = classifier.fit(images, y, 4, classifier.Training(steps=6, batch_size=16, lr=1e-3, width=4,
                                                                 workers=workers), seed=3, balanced=True,
                               augment=augment)
        return model.state_dict()

    reference = weights(in_memory, 0)
    for images, workers in ((x, 0), (x, 2)):
        got = weights(images, workers)
        assert all(torch.equal(got[k], reference[k]) for k in reference)


def test_classifiers_trained_together_are_the_ones_trained_one_by_one():
    """classifier.fit_all(together=True), the GPU's way (one network of grouped convolutions),
    trains each member as it would be trained alone: its own initial weights, draws, class
    balance and augmentation. After one step the weights are equal but for rounding; after 60,
    when Adam has magnified rounding in weights of no effect (a bias before BatchNorm), the
    members still predict alike."""
    from sklearn.datasets import load_digits

    from ganaug.pipeline.judges import classifier

    d = load_digits()
    x = torch.from_numpy((d.images * 255 / 16).astype(np.uint8))[:, None]
    y = torch.from_numpy(d.target).long()

    def members():
        return [classifier.Member(x, y, 3, True, classifier.classic_augment(0.1, 10.0, 0.1, False, seed=3)),
                classifier.Member(x[:900], y[:900], 4),  # other images, another seed, plain draws
                classifier.Member(x, y, 5, False, classifier.classic_augment(0.1, 0.0, 0.0, False, seed=5))]

    for steps in (1, 60):
        training = classifier.Training(steps, batch_size=32, lr=2e-3, width=8)
        alone = classifier.fit_all(members(), 10, training, together=False)
        together = classifier.fit_all(members(), 10, training, together=True)
        for a, t in zip(alone, together):
            if steps == 1:
                sa, st = a.state_dict(), t.state_dict()
                assert all(torch.allclose(sa[k].float(), st[k].float(), atol=1e-5) for k in sa)
            else:
                agree = (classifier.predict(a, x)[0] == classifier.predict(t, x)[0]).mean()
                assert agree > 0.97, agree
    # ... and the members are not one classifier three times: their own seeds and data show
    assert not torch.equal(together[0].head.weight, together[2].head.weight)
