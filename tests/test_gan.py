"""The GAN library: shapes, determinism, batch-independent sampling, checkpoints."""

import copy

import numpy as np
import pytest
import torch

from gan import checkpoint
from gan.losses import NOISE_PAIR_DISTANCE, mode_seeking, paired, r1_penalty, real_spread
from gan.models import ModelConfig, build
from gan.sampling import balanced_labels, chunk_rows, grid, sample, sample_seeds
from gan.train import TrainConfig, train

TINY = TrainConfig(steps=30, batch_size=16, log_every=10, grid_every=0)


def toy_data(n=64, c=1, h=8, w=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (torch.from_numpy(rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)),
            torch.from_numpy(rng.integers(0, classes, n).astype(np.int64)))


@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 0), ((1, 28, 28), 10), ((3, 12, 10), 4)])
def test_shapes(shape, classes):
    cfg = ModelConfig(channels=shape[0], height=shape[1], width=shape[2], num_classes=classes)
    G, D = build(cfg)
    y = torch.zeros(5, dtype=torch.long) if classes else None
    x = G(torch.randn(5, cfg.z_dim), y)
    assert x.shape == (5, *shape) and 0 <= x.min() and x.max() <= 1
    assert D(x, y).shape == (5,)


def test_seed_architecture_is_faithful():
    G, D = build(ModelConfig(channels=1, height=28, width=28))
    g_lin = [m for m in G.modules() if isinstance(m, torch.nn.Linear)]
    d_lin = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_lin] == [(100, 128), (128, 128), (128, 784)]
    assert [(m.in_features, m.out_features) for m in d_lin] == [(784, 128), (128, 128), (128, 1)]


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match=r"unknown model 'dcgn'; choose from \['dcgan', 'mlp'\]"):
        build(ModelConfig(kind="dcgn"))


@pytest.mark.parametrize("field,value", [("steps", 0), ("batch_size", -1), ("lr", 0.0), ("mode_seeking", -1.0), ("mode_seeking_cap", -1.0), ("r1", -0.1)])
def test_bad_train_config_names_the_field(field, value):
    x, y = toy_data()
    cfg = TrainConfig(**{**TINY.to_dict(), field: value})
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        train(cfg, ModelConfig(height=8, width=8, num_classes=3), x, y)


def test_same_seed_same_weights_and_images():
    x, y = toy_data()
    cfg = ModelConfig(height=8, width=8, num_classes=3)
    a = train(TINY, cfg, x, y)
    b = train(TINY, cfg, x, y)
    c = train(TrainConfig(**{**TINY.to_dict(), "seed": 1}), cfg, x, y)
    for key, value in a.ema.state_dict().items():
        assert torch.equal(value, b.ema.state_dict()[key]), key
    assert not torch.equal(a.generator.net[0].weight, c.generator.net[0].weight)
    labels = balanced_labels(10, 3)
    np.testing.assert_array_equal(sample(a.ema, 10, 5, labels), sample(b.ema, 10, 5, labels))


def test_training_reports_losses_and_grids():
    x, y = toy_data()
    seen, grids = [], []
    train(TINY, ModelConfig(height=8, width=8, num_classes=3), x, y,
          report=lambda k, v, s: seen.append((k, s)), report_grid=lambda p, s: grids.append((p.shape, s)))
    assert ("loss_d", 10) in seen and ("loss_g", 30) in seen
    assert grids and grids[-1][1] == 30 and grids[-1][0][-1] == 1


def test_image_depends_only_on_its_seed():
    G, _ = build(ModelConfig(height=8, width=8, num_classes=3), seed=3)
    seeds = np.arange(100, 100 + chunk_rows(G.cfg) + 130)  # a whole chunk and a padded tail
    labels = balanced_labels(len(seeds), 3)
    together = sample_seeds(G, seeds, labels)
    one_by_one = np.concatenate([sample_seeds(G, seeds[i:i + 1], labels[i:i + 1]) for i in range(len(seeds))])
    np.testing.assert_array_equal(together, one_by_one)
    # image i of sample(G, n, seed) is the image of seed + i, whatever n
    np.testing.assert_array_equal(sample(G, 7, 100, labels[:7]), together[:7])
    assert together.dtype == np.uint8 and together.shape == (len(seeds), 1, 8, 8)


def test_sampling_checks_labels():
    G, _ = build(ModelConfig(height=8, width=8, num_classes=3))
    with pytest.raises(ValueError, match="conditional"):
        sample(G, 2, 0)
    with pytest.raises(ValueError, match="out of range"):
        sample(G, 2, 0, np.array([0, 3]))
    U, _ = build(ModelConfig(height=8, width=8))
    with pytest.raises(ValueError, match="unconditional"):
        sample(U, 2, 0, np.array([0, 1]))


def test_checkpoint_roundtrip_is_plain_data(tmp_path):
    x, y = toy_data()
    cfg = ModelConfig(height=8, width=8, num_classes=3)
    res = train(TINY, cfg, x, y)
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, cfg, res.ema, generator=res.generator, discriminator=res.discriminator,
                    train=TINY.to_dict(), step=res.steps)
    raw = torch.load(path, weights_only=True)  # no code inside: loads with weights_only
    assert raw["format"] == 1 and raw["model"]["num_classes"] == 3 and raw["step"] == 30
    G = checkpoint.load_generator(path)
    labels = balanced_labels(8, 3)
    np.testing.assert_array_equal(sample(G, 8, 0, labels), sample(res.ema, 8, 0, labels))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")


def test_ema_differs_from_raw_generator():
    x, y = toy_data()
    res = train(TINY, ModelConfig(height=8, width=8, num_classes=3), x, y)
    assert not torch.equal(res.ema.net[0].weight, res.generator.net[0].weight)


def test_grid_layout():
    images = np.full((5, 1, 4, 4), 200, dtype=np.uint8)
    pic = grid(images, nrow=3, pad=1)
    assert pic.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    assert pic[1:5, 1:5].min() == 200 and pic[0].max() == 0


# ------------------------------------------------------------------ resume, divergence, probe, dcgan

from gan.train import Diverged  # noqa: E402


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("augment,schedule", [("", "constant"), ("translation,cutout", "cosine")])
def test_resume_equals_uninterrupted(tmp_path, augment, schedule):
    x, y = toy_data()
    cfg = TrainConfig(steps=40, batch_size=16, log_every=10, checkpoint_every=20, grid_every=0, augment=augment,
                      lr_schedule=schedule)
    model = ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16)
    whole = train(cfg, model, x, y, checkpoint_path=tmp_path / "a.pt")

    def crash(key, value, step):
        if step == 30:
            raise Interrupt  # after the step-20 checkpoint, before the end

    with pytest.raises(Interrupt):
        train(cfg, model, x, y, report=crash, checkpoint_path=tmp_path / "b.pt")
    assert checkpoint.load(tmp_path / "b.pt")["step"] == 20
    resumed = train(cfg, model, x, y, checkpoint_path=tmp_path / "b.pt")
    for net in ("ema", "generator", "discriminator"):
        a, b = getattr(whole, net).state_dict(), getattr(resumed, net).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), (net, key)


def test_resume_refuses_another_config(tmp_path):
    x, y = toy_data()
    model = ModelConfig(height=8, width=8, num_classes=3)
    train(TrainConfig(steps=10, batch_size=8, log_every=5, checkpoint_every=5), model, x, y,
          checkpoint_path=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="differs"):
        train(TrainConfig(steps=10, batch_size=8, log_every=5, checkpoint_every=5, lr=1e-3), model, x, y,
              checkpoint_path=tmp_path / "c.pt")


def test_divergence_guard_keeps_a_loadable_checkpoint(tmp_path):
    x, y = toy_data()
    cfg = TrainConfig(steps=50, batch_size=16, lr=1e12, log_every=1, checkpoint_every=1, grid_every=0)  # absurd lr
    with pytest.raises(Diverged, match=r"training diverged at step \d+") as err:
        train(cfg, ModelConfig(height=8, width=8, num_classes=3), x, y, checkpoint_path=tmp_path / "d.pt")
    state = checkpoint.load(tmp_path / "d.pt")
    assert state["step"] < err.value.step
    G = checkpoint.load_generator(tmp_path / "d.pt")
    assert sample(G, 3, 0, np.array([0, 1, 2])).shape == (3, 1, 8, 8)


def test_probe_keeps_the_best_ema():
    x, y = toy_data()
    scores = iter([5.0, 1.0, 3.0, 4.0])
    seen = []

    def probe(G):
        seen.append(copy.deepcopy(G.state_dict()))
        return next(scores)

    cfg = TrainConfig(steps=40, batch_size=16, log_every=10, probe_every=10, grid_every=0)
    res = train(cfg, ModelConfig(height=8, width=8, num_classes=3), x, y, probe=probe)
    assert (res.best_step, res.best_score) == (20, 1.0)
    for key, value in seen[1].items():
        assert torch.equal(res.ema.state_dict()[key], value)
    early = train(TrainConfig(**{**cfg.to_dict(), "patience": 1}), ModelConfig(height=8, width=8, num_classes=3),
                  x, y, probe=lambda G: 1.0)
    assert early.steps == 20  # the second probe did not improve: stop
    probed = []
    last = train(TrainConfig(**{**cfg.to_dict(), "steps": 25}), ModelConfig(height=8, width=8, num_classes=3), x, y,
                 probe=lambda G: 30.0 - len(probed), report=lambda k, v, step: probed.append(step) if k == "probe_score" else None)
    assert probed == [10, 20, 25] and last.best_step == 25  # the last step is a candidate too


@pytest.mark.parametrize("loss", ["bce", "hinge"])
def test_dcgan_trains_and_samples_independently_of_batch(loss):
    x, y = toy_data(n=48, h=12, w=10)
    cfg = TrainConfig(steps=20, batch_size=8, log_every=10, grid_every=0, loss=loss)
    res = train(cfg, ModelConfig(kind="dcgan", height=12, width=10, num_classes=3, hidden=16), x, y)
    seeds, labels = np.arange(70), balanced_labels(70, 3)
    together = sample_seeds(res.ema, seeds, labels)
    singles = np.concatenate([sample_seeds(res.ema, seeds[i:i + 1], labels[i:i + 1]) for i in range(70)])
    np.testing.assert_array_equal(together, singles)
    assert together.shape == (70, 1, 12, 10)


def test_cosine_schedule_changes_the_weights():
    x, y = toy_data()
    cfg = TrainConfig(steps=30, batch_size=16, log_every=10, grid_every=0, checkpoint_every=0, lr=1e-3,
                      lr_schedule="cosine")
    model = ModelConfig(height=8, width=8, num_classes=3, hidden=16)
    cosine = train(cfg, model, x, y).generator.state_dict()
    constant = train(TrainConfig(**{**cfg.to_dict(), "lr_schedule": "constant"}), model, x, y).generator.state_dict()
    assert any(not torch.allclose(cosine[k], constant[k], rtol=1e-4, atol=1e-5) for k in cosine)


def test_ema_update_is_the_warmed_up_average():
    """ema ← beta·ema + (1-beta)·G with beta = min(beta, (1+step)/(10+step)); buffers copied."""
    from gan.train import update_ema

    G, _ = build(ModelConfig(kind="dcgan", height=8, width=8, hidden=8), seed=0)
    ema, _ = build(ModelConfig(kind="dcgan", height=8, width=8, hidden=8), seed=1)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    update_ema(ema, G, 0.999, step=5)
    beta = 6 / 15
    for (name, p), g in zip(ema.named_parameters(), G.parameters()):
        torch.testing.assert_close(p, before[name] * beta + g * (1 - beta), rtol=0, atol=1e-7)
    for (name, b), g in zip(ema.named_buffers(), G.buffers()):
        assert torch.equal(b, g), name


def test_unknown_loss():
    with pytest.raises(ValueError, match=r"unknown loss 'wgan'; choose from \['bce', 'hinge'\]"):
        train(TrainConfig(loss="wgan"), ModelConfig(height=8, width=8), *toy_data())
    with pytest.raises(ValueError, match=r"unknown lr_schedule 'step'; choose from \['constant', 'cosine'\]"):
        train(TrainConfig(lr_schedule="step"), ModelConfig(height=8, width=8), *toy_data())


def test_spectral_norm_mlp_trains():
    """With spectral norm in D, gradients reach the parametrised weights."""
    model = ModelConfig(kind="mlp", height=8, width=8, num_classes=3, hidden=16, spectral_norm=True)
    res = train(TrainConfig(steps=5, batch_size=8, log_every=5, grid_every=0, checkpoint_every=0), model, *toy_data())
    assert res.steps == 5 and all(torch.isfinite(p).all() for p in res.discriminator.parameters())


def test_sampling_leaves_a_generator_that_returns_its_weights_untouched():
    """A generator may return a view of a parameter (a constant image): sampling converts a
    copy, never writes into it."""
    class Constant(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.image = torch.nn.Parameter(torch.full((1, 8, 8), 1.7))  # outside [0, 1]: clamped

        def forward(self, z, labels=None):
            return self.image.expand(len(z), -1, -1, -1)

    G = Constant(ModelConfig(kind="constant", height=8, width=8))
    assert (sample_seeds(G, np.arange(3)) == 255).all()
    assert torch.equal(G.image.detach(), torch.full((1, 8, 8), 1.7))


def test_mode_seeking_pairs_labels_and_pushes_the_noise_apart():
    assert paired(torch.tensor([3, 1, 4, 1, 5])).tolist() == [3, 1, 3, 1, 5]
    assert paired(None) is None
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    same = torch.zeros(8, 1, 2, 2)
    assert mode_seeking(same, z) == pytest.approx(1e5)  # G ignores its noise: the largest penalty
    apart = z[:, :1, None, None].expand(8, 1, 2, 2)    # images as far apart as their noise
    expected = 1 / (((z[:4, 0] - z[4:, 0]).abs() / (z[:4] - z[4:]).abs().mean(1)).mean() + 1e-5)
    assert mode_seeking(apart, z) == pytest.approx(float(expected), rel=1e-5)
    # one gradient step on the term alone spreads a generator's images over the noise
    model = ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16)
    G, _ = build(model)
    z = torch.randn(16, model.z_dim, generator=torch.Generator().manual_seed(1))
    y = paired(torch.arange(16) % 3)
    before = mode_seeking(G(z, y), z)
    before.backward()
    with torch.no_grad():
        for p in G.parameters():
            p -= 0.05 * p.grad / (p.grad.norm() + 1e-12)
    assert mode_seeking(G(z, y), z) < before


def test_capped_mode_seeking_leaves_pairs_as_far_apart_as_real_ones_alone():
    """DSGAN's cap: a pair of fakes whose ratio is over the cap adds no gradient (G is not
    pushed to more ink than the data has); one under it still does."""
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    fake = torch.rand(8, 1, 2, 2, generator=torch.Generator().manual_seed(1)).requires_grad_()
    ratio = ((fake[:4] - fake[4:]).abs().flatten(1).mean(1) / (z[:4] - z[4:]).abs().mean(1)).detach()
    assert mode_seeking(fake, z, cap=float(ratio.max()) + 1).item() == pytest.approx(mode_seeking(fake, z).item())
    mode_seeking(fake, z, cap=float(ratio.min()) / 2).backward()
    assert fake.grad.abs().max() == 0
    cap = float(ratio.sort().values[1:3].mean())  # between the two middle pairs' ratios
    mode_seeking(fake, z, cap=cap).backward()
    moved = fake.grad.flatten(1).abs().sum(1)
    below = torch.cat([ratio < cap, ratio < cap])
    assert (moved[below] > 0).all() and (moved[~below] == 0).all()


def test_real_spread_pairs_images_of_one_class():
    """Identical images within each class: no spread between same-class pairs; across classes
    the pixel distance over E|z_i − z_j| = 2/√π."""
    images = torch.cat([torch.zeros(50, 1, 4, 4), torch.full((50, 1, 4, 4), 255.0)]).to(torch.uint8)
    labels = torch.arange(100) // 50
    assert real_spread(images, labels) == 0
    unlabelled = real_spread(images, None)
    assert 0.3 < unlabelled * NOISE_PAIR_DISTANCE < 0.7  # about half the pairs differ by 1 per pixel
    assert unlabelled == real_spread(images, None) != real_spread(images, None, seed=1)


def test_mode_seeking_trains_and_is_reproducible():
    x, y = toy_data()
    cfg = TrainConfig(**{**TINY.to_dict(), "mode_seeking": 1.0})
    model = ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16)
    a, b, plain = train(cfg, model, x, y), train(cfg, model, x, y), train(TINY, model, x, y)
    for key, value in a.ema.state_dict().items():
        assert torch.equal(value, b.ema.state_dict()[key]), key
    assert not torch.equal(a.generator.fc[0].weight, plain.generator.fc[0].weight)
    capped_cfg = TrainConfig(**{**cfg.to_dict(), "mode_seeking_cap": 0.5})
    capped, again = train(capped_cfg, model, x, y), train(capped_cfg, model, x, y)
    assert not torch.equal(a.generator.fc[0].weight, capped.generator.fc[0].weight)
    for key, value in capped.ema.state_dict().items():  # the cap's real pairs come from the seed
        assert torch.equal(value, again.ema.state_dict()[key]), key
    dp = TrainConfig(**{**cfg.to_dict(), "mode_seeking_cap": 1.0, "dp_epsilon": 10.0, "probe_every": 0})
    with pytest.raises(ValueError, match="mode_seeking_cap must be 0 with dp_epsilon"):
        train(dp, model, x, y)


def test_r1_penalty_is_the_squared_gradient_norm_of_d_at_the_real_images():
    w = torch.randn(12, generator=torch.Generator().manual_seed(0))
    real = torch.rand(5, 3, 2, 2, requires_grad=True)
    out = real.flatten(1) @ w + real.flatten(1).pow(2).sum(1)    # ∇ₓ = w + 2x, per image
    expected = (w + 2 * real.detach().flatten(1)).pow(2).sum(1).mean()
    assert r1_penalty(out, real).item() == pytest.approx(expected.item(), rel=1e-6)


def _d_slope(D, x, y) -> float:
    x = x.float().div(255).requires_grad_(True)
    return r1_penalty(D(x, y), x).item()


def test_r1_trains_reproducibly_and_keeps_d_flat_at_the_real_images():
    x, y = toy_data()
    model = ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16)
    cfg = TrainConfig(**{**TINY.to_dict(), "r1": 10.0})
    a, b, plain = train(cfg, model, x, y), train(cfg, model, x, y), train(TINY, model, x, y)
    for key, value in a.discriminator.state_dict().items():
        assert torch.equal(value, b.discriminator.state_dict()[key]), key
    assert _d_slope(a.discriminator, x, y) < 0.8 * _d_slope(plain.discriminator, x, y)  # 0.65 here


def test_r1_is_refused_under_dp():
    x, y = toy_data()
    cfg = TrainConfig(**{**TINY.to_dict(), "r1": 0.1, "dp_epsilon": 10.0})
    with pytest.raises(ValueError, match="TrainConfig.r1 must be 0 with dp_epsilon"):
        train(cfg, ModelConfig(height=8, width=8, num_classes=3), x, y)
