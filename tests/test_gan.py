"""The GAN on tensors alone: shapes, determinism, checkpoints, failure modes, and that it learns."""
import io

import pytest
import torch

from ganaug.gan import GANConfig, GANTrainer, NonFiniteLoss, TrainHyper, sample_images, health, load_sampler, score
from ganaug.gan.diffaug import diff_augment


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
    batch = sample_images(G, [0, 1, 2, 1], [10, 11, 12, 13], batch_size=4)
    alone = sample_images(G, [2], [12])
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
    a = t.losses(t.step(x, y))
    torch.set_rng_state(state["rng_cpu"])
    b = t2.losses(t2.step(x, y))
    assert a == pytest.approx(b, rel=1e-5)


def test_non_finite_loss_stops_training():
    """The step never waits for the device; the first check after a NaN names it."""
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8))
    x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 0, 1])
    t.step(x, y)
    t.check_finite()  # all finite: no error
    t.step(x, y)
    t.step(torch.full((4, 1, 8, 8), float("nan")), y)
    t.step(x, y)
    with pytest.raises(NonFiniteLoss, match="discriminator loss became nan between step 1 and step 4"):
        t.check_finite()


def test_a_step_never_waits_for_the_device():
    """No `.item()` (or float(), bool() of a tensor) in a step: on a GPU each is a stall of the
    launch queue. Adam's host-side step counter (the fused CPU kernel's) is one exception; gSR
    (train.gsr, off by default) another: its singular values check their errors on the host."""
    from torch.profiler import ProfilerActivity, profile

    t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8), TrainHyper(lecam=0.1, diffaug=("color", "translation", "cutout")))
    x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 0, 1])
    t.step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t.step(x, y)

    def in_optimizer(e):
        while e is not None and not e.name.startswith("Optimizer.step"):
            e = e.cpu_parent
        return e is not None

    syncs = [e for e in prof.events() if e.name == "aten::_local_scalar_dense" and not in_optimizer(e)]
    assert not syncs, [e.cpu_parent.name for e in syncs]


def test_conditioning_is_learned():
    """Two classes, black and white: after a short run each class's samples take its colour."""
    torch.manual_seed(0)
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=16, width=16), TrainHyper(lr_g=1e-3, lr_d=1e-3, diffaug=()))
    x = torch.cat([-torch.ones(32, 1, 8, 8), torch.ones(32, 1, 8, 8)]) * 0.8
    y = torch.tensor([0] * 32 + [1] * 32)
    for _ in range(150):
        t.step(x + 0.1 * torch.randn_like(x), y)
    t.refresh_ema_batchnorm()
    imgs = sample_images(t.G_ema, [0] * 16 + [1] * 16, list(range(32)))
    assert imgs[:16].mean() < -0.3 and imgs[16:].mean() > 0.3
    # And D, under each class, prefers that class's real colour.
    _, D = load_sampler(t.state_dict({"black": 0, "white": 1}), torch.device("cpu"))
    s = score(D, torch.cat([x[:1], x[-1:]]), [1, 1])
    assert s[1] > s[0]


def _train_on_shapes(hyper: TrainHyper, steps: int = 150) -> dict:
    """16 px circles/squares/crosses (40, 40, 8 images), class-balanced batches, as train does."""
    import numpy as np

    from tests.conftest import draw_shape

    rng = np.random.default_rng(0)
    kinds, counts = ("circle", "square", "cross"), (40, 40, 8)
    x = torch.from_numpy(np.stack([np.asarray(draw_shape(k, rng, size=16), dtype=np.float32) / 127.5 - 1
                                   for k, n in zip(kinds, counts) for _ in range(n)]))[:, None]
    y = torch.tensor([c for c, n in enumerate(counts) for _ in range(n)])
    torch.manual_seed(0)
    t = GANTrainer(GANConfig(16, 1, 3, z_dim=32, width=16), hyper)
    balance = 1.0 / torch.bincount(y).float()[y]
    history = []
    for s in range(steps):
        idx = torch.multinomial(balance, 32, replacement=True, generator=torch.Generator().manual_seed(s))
        losses = t.losses(t.step(x[idx], y[idx]))
        history.append({"margin": losses["d_real"] - losses["d_fake"]})
    real = torch.tensor([health.spread(x[y == c]) for c in range(3)])
    history[-1]["diversity_per_class"] = (health.class_spreads(t.G) / real).tolist()
    return health.verdict(history, kinds)


def test_default_recipe_keeps_d_alive_and_g_diverse():
    """The failure that shipped before: D stopped separating real from fake and every class's
    row was one image repeated. The default recipe must keep D's margin positive and give
    different images for different z in every class, the 8-image one included."""
    v = _train_on_shapes(TrainHyper())
    assert v["status"] == "ok", v["problems"]
    assert v["margin_last_fifth"] > 0.5
    assert min(v["diversity_per_class"].values()) > 0.4, v["diversity_per_class"]


def test_health_flags_the_collapse_of_the_old_recipe():
    """One D step at G's learning rate with cutout (the old default) collapses G within a class;
    the monitor must say so rather than let the run finish as if all were well."""
    v = _train_on_shapes(TrainHyper(lr_d=2e-4, n_dis=1, diffaug=("translation", "cutout"), mode_seeking=0.0))
    assert v["status"] == "unhealthy"
    assert any("generator collapsed" in p for p in v["problems"])


def test_health_verdict_names_a_dead_discriminator():
    rows = [{"margin": 0.01, "diversity_per_class": [0.9, 0.8]}] * 10
    v = health.verdict(rows, ["a", "b"])
    assert v["status"] == "unhealthy" and "discriminator dead" in v["problems"][0]
    assert health.verdict([{"margin": 0.4, "diversity_per_class": [0.9, 0.8]}], ["a", "b"])["status"] == "ok"


def test_best_snapshot_is_what_the_sampler_loads():
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8))
    t.mark_best(1.0)
    best_w = {k: v.clone() for k, v in t.G_ema.state_dict().items()}
    x, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.tensor([0, 1] * 4)
    for _ in range(3):
        t.step(x, y)
    buf = io.BytesIO()
    torch.save(t.state_dict({"a": 0, "b": 1}), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["best"]["step"] == 0 and state["step"] == 3
    G, _ = load_sampler(state, torch.device("cpu"))
    for k, v in G.state_dict().items():
        assert torch.equal(v, best_w[k]), k
    assert GANTrainer.from_state_dict(state, torch.device("cpu")).best["metric"] == 1.0


def test_class_free_blocks_share_the_low_resolutions_across_classes():
    """UTLO-style (train.class_free_blocks): what G makes at the low resolutions does not depend
    on the class; the class enters above them, so the images still do."""
    from ganaug.gan import Generator

    cfg = GANConfig(img_size=16, channels=1, n_classes=3, z_dim=16, width=8, class_free_blocks=1)
    G = Generator(cfg).eval()
    with torch.no_grad():  # give every class its own gains and biases, as training would
        for m in G.class_conditioned_norms():
            m.gain.weight.normal_(1.0, 0.3)
            m.bias.weight.normal_(0.0, 0.3)
    seen = []
    G.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(out))
    z = torch.randn(1, 16).repeat(3, 1)
    with torch.no_grad():
        images = G(z, torch.tensor([0, 1, 2]))
    low = seen[0]
    assert torch.allclose(low[0], low[1]) and torch.allclose(low[0], low[2])  # 8x8: class-free
    assert not torch.allclose(images[0], images[1])                          # 16x16: the class shows
    assert "class_free_blocks" not in GANConfig(16, 1, 3).to_dict()  # default checkpoints keep their id
    with pytest.raises(ValueError, match="class_free_blocks must be in"):
        GANConfig(img_size=16, channels=1, n_classes=3, class_free_blocks=2)


def test_truncated_latents_stay_inside_and_depend_only_on_the_seed():
    """generate.truncation: every entry within +-t, the same latent for the same seed (an image is
    still made by its manifest row), the untruncated entries those of the plain latent."""
    from ganaug.gan.sample import latents

    plain, cut = latents(range(50), 64), latents(range(50), 64, truncation=0.5)
    assert cut.abs().max() <= 0.5 and plain.abs().max() > 0.5
    assert torch.equal(cut, latents(range(50), 64, truncation=0.5))
    inside = plain.abs() <= 0.5
    assert torch.equal(cut[inside], plain[inside])
    G, _ = load_sampler(GANTrainer(GANConfig(8, 1, 2, z_dim=16, width=8)).state_dict({"a": 0, "b": 1}),
                        torch.device("cpu"))
    a = sample_images(G, [0, 1], [3, 4], truncation=0.5)
    assert torch.allclose(a, sample_images(G, [1, 0], [4, 3], truncation=0.5).flip(0), atol=1e-6)
    assert not torch.allclose(a, sample_images(G, [0, 1], [3, 4]), atol=1e-3)


def test_a_compiled_step_equals_an_eager_one():
    """torch.compile (inductor, on the CPU here) takes the same steps as eager: it crashed before,
    when the spectral norm's power iteration wrote its vectors inside a compiled forward."""
    def run(compile):
        torch.manual_seed(0)
        t = GANTrainer(GANConfig(8, 1, 2, z_dim=8, width=8), TrainHyper(lecam=0.1), compile=compile)
        x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 0, 1])
        return [t.losses(t.step(x, y)) for _ in range(2)], t

    eager, _ = run(False)
    compiled, t = run(True)
    assert t.compile_error is None
    for a, b in zip(eager, compiled):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


def test_a_generator_that_ignores_the_class_is_reported_so():
    """The failure seen when the recipe was scaled up on a GPU: one texture for every class, D
    alive, nothing else flagged. Train's validation judge labels G's images; near chance, health
    says the generator ignores the class. A generator that follows the class is not flagged."""
    from ganaug.pipeline.plumbing.params import Params
    from ganaug.pipeline.judges.validation import ValidationJudge

    torch.manual_seed(0)
    x = torch.cat([-torch.ones(32, 1, 8, 8), torch.ones(32, 1, 8, 8)]) * 0.8 + 0.1 * torch.randn(64, 1, 8, 8)
    y = torch.tensor([0] * 32 + [1] * 32)
    params = Params.model_validate({"evaluate": {"width": 8, "epochs": 3}})
    judge = ValidationJudge(x, y, ["black", "white"], params, torch.device("cpu"))
    t = GANTrainer(GANConfig(8, 1, 2, z_dim=16, width=16), TrainHyper(lr_g=1e-3, lr_d=1e-3, diffaug=()))
    for _ in range(150):
        t.step(x, y)
    t.refresh_ema_batchnorm()
    healthy_row = {"margin": 1.0, "label_agreement": judge.score(t.G_ema)[1]}
    assert health.verdict([healthy_row], ["black", "white"])["status"] == "ok", healthy_row

    with torch.no_grad():  # the same generator, made deaf to y: every class's parameters are class 0's
        t.G_ema.embed.weight[:] = t.G_ema.embed.weight[0]
        for norm in t.G_ema.class_conditioned_norms():
            norm.gain.weight[:] = norm.gain.weight[0]
            norm.bias.weight[:] = norm.bias.weight[0]
    deaf_row = {"margin": 1.0, "label_agreement": judge.score(t.G_ema)[1]}
    v = health.verdict([deaf_row], ["black", "white"])
    assert v["status"] == "unhealthy" and "generator ignores the class" in v["problems"][0], deaf_row
