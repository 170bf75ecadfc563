"""The GAN on tensors alone: shapes, determinism, checkpoints, failure modes, and that it learns."""
import io

import pytest
import torch

from gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, generate, load_sampler, score
from gan.diffaug import diff_augment


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (32, 1)])
def test_shapes(size, channels):
    t = GANTrainer(GANConfig(size, channels, n_classes=4, z_dim=8, width=8))
    img = t.G(torch.randn(5, 8), torch.arange(5) % 4)
    assert img.shape == (5, channels, size, size)
    assert img.abs().max() <= 1
    assert t.D(img, torch.arange(5) % 4).shape == (5,)


def test_config_rejects_odd_sizes():
    with pytest.raises(ValueError, match="power of two"):
        GANConfig(24, 1, 2)


def test_diffaug_keeps_shape_and_gradient():
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, ("color", "translation", "cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # cutout zeroes a square in every image; translation moves content.
    assert ((diff_augment(torch.ones(4, 1, 16, 16), ("cutout",)) == 0).flatten(1).sum(1) > 0).all()


def test_images_depend_only_on_label_and_seed():
    G, _ = load_sampler(GANTrainer(GANConfig(8, 1, 3, z_dim=8, width=8)).state_dict({"a": 0, "b": 1, "c": 2}),
                        torch.device("cpu"))
    batch = generate(G, [0, 1, 2, 1], [10, 11, 12, 13], batch_size=4)
    alone = generate(G, [2], [12])
    assert torch.allclose(batch[2], alone[0], atol=1e-6)
    assert not torch.allclose(batch[1], batch[3])


def test_checkpoint_round_trip_with_weights_only():
    torch.manual_seed(0)
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8), TrainHyper(lecam=0.1))
    x, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.tensor([0, 1] * 4)
    t.step(x, y)
    buf = io.BytesIO()
    torch.save(t.state_dict({"x": 0, "y": 1}, {"note": "hi"}), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["label_map"] == {"x": 0, "y": 1} and state["config"]["img_size"] == 8 and state["step"] == 1
    t2 = GANTrainer.from_state_dict(state, torch.device("cpu"))
    # Resuming continues exactly: same RNG, same optimizer state, same next step.
    torch.set_rng_state(state["rng_cpu"])
    a = t.step(x, y)
    torch.set_rng_state(state["rng_cpu"])
    b = t2.step(x, y)
    assert a == pytest.approx(b, rel=1e-5)


def test_non_finite_loss_stops_training():
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8))
    with pytest.raises(NonFiniteLoss, match="discriminator loss became nan at step 0"):
        t.step(torch.full((4, 1, 8, 8), float("nan")), torch.tensor([0, 1, 0, 1]))


def test_conditioning_is_learned():
    """Two classes, black and white: after a short run each class's samples take its colour."""
    torch.manual_seed(0)
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=16, width=16), TrainHyper(lr_g=1e-3, lr_d=1e-3, diffaug=()))
    x = torch.cat([-torch.ones(32, 1, 8, 8), torch.ones(32, 1, 8, 8)]) * 0.8
    y = torch.tensor([0] * 32 + [1] * 32)
    for _ in range(150):
        t.step(x + 0.1 * torch.randn_like(x), y)
    t.refresh_ema_batchnorm()
    imgs = generate(t.G_ema, [0] * 16 + [1] * 16, list(range(32)))
    assert imgs[:16].mean() < -0.3 and imgs[16:].mean() > 0.3
    # And D, under each class, prefers that class's real colour.
    _, D = load_sampler(t.state_dict({"black": 0, "white": 1}), torch.device("cpu"))
    s = score(D, torch.cat([x[:1], x[-1:]]), [1, 1])
    assert s[1] > s[0]
