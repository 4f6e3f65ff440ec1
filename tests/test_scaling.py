"""Models that follow the image size, and sampling noise that is vectorised yet per seed.

The DCGAN and the extractor grow a stage per doubling of the image; the SplitMix64 noise schemes
are checked bit for bit against the reference algorithm written in plain Python; generators and
virtual datasets published before these changes (fixtures in tests/data, written by the code of
that time) still load and pull bit-exact.
"""

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

import catalog
from catalog import formats
from gan.checkpoint import load_generator
from gan.config import ModelConfig
from gan.dcgan import DCDiscriminator, group_std, stages, widths
from gan.features import ClassifierConfig, stages_for, train_classifier
from gan.models import build
from gan.sampling import (
    balanced_labels,
    noise_for_seeds,
    normal_quantiles,
    quantile_noise,
    sample_seeds,
    splitmix64,
    splitmix64_noise,
)
from gan.train import TrainConfig, train
from registry import generators

DATA = Path(__file__).parent / "data"
MASK = (1 << 64) - 1


def splitmix64_reference(seed: int, count: int) -> list[int]:
    """SplitMix64 as published (Steele, Lea & Flood 2014; Vigna's splitmix64.c), in Python ints."""
    out, state = [], seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 48), (3, 128, 128)])
@pytest.mark.parametrize("classes", [0, 10])
def test_dcgan_of_any_size_builds_trains_and_samples(shape, classes):
    c, h, w = shape
    model = ModelConfig(kind="dcgan", channels=c, height=h, width=w, num_classes=classes, hidden=64)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (16, c, h, w), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, 16)) if classes else None
    res = train(TrainConfig(steps=2, batch_size=4, log_every=1, grid_every=0, checkpoint_every=0), model, x, y)
    images = sample_seeds(res.ema, np.arange(5), balanced_labels(5, classes) if classes else None)
    assert images.shape == (5, *shape) and images.dtype == np.uint8
    # a stage per doubling, at least 3: the base grid is at most 8x8 and the last stage is hidden/4 wide
    assert stages(model) == {28: 3, 32: 3, 64: 3, 128: 4}[max(h, w)]
    assert max(h, w) / 2 ** stages(model) <= 8 and widths(model)[-1] == 16
    assert res.ema.fc[0].out_features <= 8 * 64 * 64  # no 16,384-wide linear layer at 64 px


def test_28_px_dcgan_has_three_stages_and_stored_configs_keep_theirs():
    """At 28 px G starts from a 4x4 grid (three stages, cropped from 32) and D has a 3x3
    convolution after each stride-2 one. A config stored before ``min_stages`` builds the two
    stages it was trained with, and one before ``d_convs`` one convolution per D stage."""
    G, D = build(ModelConfig(kind="dcgan", channels=1, height=28, width=28, num_classes=10, hidden=64), seed=0)
    assert [tuple(p.shape) for p in G.net.parameters() if p.dim() == 4] == [
        (128, 64, 4, 4), (64, 32, 4, 4), (32, 16, 4, 4), (1, 16, 3, 3)]
    assert [tuple(p.shape) for p in D.features.parameters() if p.dim() == 4] == [
        (32, 1, 4, 4), (32, 32, 3, 3), (64, 32, 4, 4), (64, 64, 3, 3), (128, 64, 4, 4), (128, 128, 3, 3)]
    assert G(torch.zeros(2, 100), torch.zeros(2, dtype=torch.long)).shape == (2, 1, 28, 28)
    stored = {k: v for k, v in G.cfg.to_dict().items() if k != "min_stages"}
    G2, D2 = build(ModelConfig.from_dict(stored), seed=0)
    assert [tuple(p.shape) for p in G2.net.parameters() if p.dim() == 4] == [(64, 32, 4, 4), (32, 16, 4, 4), (1, 16, 3, 3)]
    assert [tuple(p.shape) for p in D2.features.parameters() if p.dim() == 4] == [
        (32, 1, 4, 4), (32, 32, 3, 3), (64, 32, 4, 4), (64, 64, 3, 3)]
    G1, D1 = build(ModelConfig.from_dict({k: v for k, v in stored.items() if k != "d_convs"}), seed=0)
    assert [tuple(p.shape) for p in D1.features.parameters() if p.dim() == 4] == [(32, 1, 4, 4), (64, 32, 4, 4)]
    for key, value in G2.state_dict().items():
        assert torch.equal(value, G1.state_dict()[key]), key  # G: same layers, same weights


def test_extractor_grows_with_the_image():
    assert [stages_for(s, s) for s in (8, 28, 32, 48, 64, 128)] == [1, 1, 1, 2, 2, 3]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 3, 64, 48), dtype=np.uint8)
    model = train_classifier(x, rng.integers(0, 4, 32), 4, ClassifierConfig(steps=2, batch_size=8))
    assert model.stages == 2 and model.features(torch.zeros(2, 3, 64, 48)).shape == (2, 128)


def test_splitmix64_is_the_published_generator():
    assert splitmix64_reference(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    seeds = [0, 1, 7, 123_456_789, 2**40 + 3, 2**63 - 1]
    ours = splitmix64(torch.tensor(seeds), 5)
    for row, seed in zip(ours.tolist(), seeds):
        assert [v & MASK for v in row] == splitmix64_reference(seed, 5)


@pytest.mark.parametrize("scheme", ["splitmix64-quantile16", "splitmix64"])
def test_splitmix64_noise_is_standard_normal_and_per_seed(scheme):
    z = noise_for_seeds(np.arange(20_000), 100, scheme)
    assert z.dtype == torch.float32 and z.shape == (20_000, 100)
    assert abs(float(z.mean())) < 0.003 and abs(float(z.std()) - 1) < 0.003
    assert abs(float((z[:, :-1] * z[:, 1:]).mean())) < 0.003  # neighbouring entries uncorrelated
    # any request of a seed gives its row: alone, at another position, in another block
    pick = np.array([19_999, 5, 4_096, 4_095, 12_345])
    np.testing.assert_array_equal(noise_for_seeds(pick, 100, scheme).numpy(), z[pick].numpy())
    with pytest.raises(ValueError, match="unknown noise scheme 'philox'"):
        noise_for_seeds(pick, 100, "philox")


def test_normal_quantiles_are_the_cell_medians_and_never_change():
    """Every image published under ``splitmix64-quantile16`` depends on this table: its digest
    is pinned, so a platform or Python whose float64 arithmetic gives another table fails here
    instead of pulling other pixels."""
    table = normal_quantiles()
    assert table.dtype == torch.float32 and table.shape == (65_536,)
    assert torch.equal(table, -table.flip(0)) and bool((table.diff() > 0).all())  # symmetric, increasing
    assert table[0] == pytest.approx(-4.3249, abs=1e-4) and table[32_768] == pytest.approx(1.9123e-5, rel=1e-3)
    assert hashlib.sha256(table.numpy().tobytes()).hexdigest() == (
        "1cfbba1e07e34386a57626f82aeb43e6ed54ba70a3ea6b7d964dc66a841074a8")


def test_quantile_noise_is_the_reference_generator_cut_in_16_bit_cells():
    seeds = [0, 1, 7, 123_456_789, 2**40 + 3, 2**63 - 1]
    table = normal_quantiles().tolist()
    z = quantile_noise(torch.tensor(seeds), 10)  # 10: three words, the last one's top two cells unused
    for row, seed in zip(z.tolist(), seeds):
        cells = [(w >> shift) & 0xFFFF for w in splitmix64_reference(seed, 3) for shift in (0, 16, 32, 48)]
        assert row == [table[k] for k in cells[:10]]


def test_splitmix64_noise_keeps_the_values_of_its_first_formula():
    """Every image published under ``splitmix64`` depends on these values: any rewrite of the
    noise's arithmetic (for speed) must give the formula written out here, bit for bit."""
    seeds = torch.from_numpy(np.random.default_rng(0).integers(0, 2**63 - 1, 4096, dtype=np.int64))
    words = splitmix64(seeds, 50)
    hi, lo = (words >> 32) & 0xFFFFFFFF, words & 0xFFFFFFFF
    radius = ((hi.double() + 0.5) * 2.0**-32).log().mul(-2.0).sqrt()
    angle = (lo.double() + 0.5) * (2.0 * math.pi * 2.0**-32)
    first = torch.stack([torch.cos(angle) * radius, torch.sin(angle) * radius], 2).reshape(4096, 100).float()
    assert torch.equal(splitmix64_noise(seeds, 100), first)
    assert torch.equal(splitmix64_noise(seeds, 7), first[:, :7])


def test_schemes_give_other_pixels_and_stored_configs_keep_theirs():
    cfg = ModelConfig(kind="mlp", height=8, width=8, num_classes=3, hidden=16)
    G, _ = build(cfg, seed=1)
    legacy, _ = build(ModelConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k not in ("noise", "stages")}), seed=1)
    labels = balanced_labels(50, 3)
    box_muller, _ = build(replace(cfg, noise="splitmix64"), seed=1)
    assert G.cfg.noise == "splitmix64-quantile16" and legacy.cfg.noise == "torch-generator"
    images = [sample_seeds(model, np.arange(50), labels) for model in (G, box_muller, legacy)]
    assert not any(np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1:])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg  # a config stored today reads back as itself
    with pytest.raises(ValueError, match="non-negative"):
        sample_seeds(G, np.array([-1]), labels[:1])


@pytest.mark.parametrize("kind", ["mlp-8x8", "dcgan-64x48"])
def test_virtual_dataset_published_before_the_noise_schemes_pulls_bit_exact(kind, tmp_path):
    """A generator written by the code before this change (two DCGAN stages at 64 px, one
    torch.Generator per seed) is registered, and a manifest of that time (no ``noise`` field)
    is pulled through the catalog: the images hash to what that code published."""
    G = load_generator(DATA / f"legacy-{kind}.npz")
    assert G.cfg.noise == "torch-generator" and (G.cfg.kind == "mlp" or stages(G.cfg) == 2)
    pull_legacy(kind, tmp_path, other_noise="splitmix64")


def test_virtual_dataset_published_before_the_third_stage_pulls_bit_exact(tmp_path):
    """A 28-px DCGAN written before ``min_stages`` (two stages, ``splitmix64`` noise, stored
    with ``stages`` 0: "follow the resolution") still builds two stages, and its publication
    pulls bit-exact."""
    G = load_generator(DATA / "legacy-dcgan-28x28.npz")
    assert G.cfg.stages == 0 and G.cfg.min_stages == 2 and stages(G.cfg) == 2 and G.cfg.noise == "splitmix64"
    pull_legacy("dcgan-28x28", tmp_path)


def pull_legacy(kind: str, tmp_path: Path, other_noise: str | None = None) -> None:
    """Register ``tests/data/legacy-<kind>.npz``, publish the virtual manifest of that time and
    pull it through the catalog: the images hash to what was published. With ``other_noise``,
    the same manifest naming that scheme instead is refused, not mis-sampled."""
    about = json.loads((DATA / "legacy-manifests.json").read_text())["manifests"][kind]
    G = load_generator(DATA / f"legacy-{kind}.npz")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:  # artifacts under tmp_path too, not ./mlruns of the working directory
        experiment = mlflow.create_experiment("legacy", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = generators.log_generator(DATA / f"legacy-{kind}.npz", G.cfg)
        mv = mlflow.register_model(info.model_uri, "legacy-generator")
        root = tmp_path / "catalog"
        manifest = {"virtual": True, "format": "npz", "shape": about["shape"], "seed": about["seed"],
                    "near_copies": about["near_copies"], "content_sha256": about["content_sha256"],
                    "generator": {"model": "legacy-generator", "version": str(mv.version)}}
        if "noise" in about:
            manifest["noise"] = about["noise"]
        catalog.publish(root, "legacy", lambda d: None, manifest)
        out = catalog.pull(root, "legacy", tmp_path / "pulled", sampler=generators.materialise)
        images, labels = formats.read("npz", out)
        assert formats.content_sha256(images, labels) == about["content_sha256"]
        assert len(np.unique(images)) > 10  # pictures, not a constant
        if other_noise:
            with pytest.raises(ValueError, match=f"noise scheme '{other_noise}'"):
                generators.materialise({**manifest, "noise": other_noise})
    finally:
        mlflow.set_tracking_uri(None)


def test_minibatch_std_groups_four_images_and_no_more():
    """D's answer for an image depends on the 3 others of its group of 4, not on other groups;
    without ``minibatch_std`` on no other image at all."""
    for std in (True, False):
        _, D = build(ModelConfig(kind="dcgan", channels=3, height=32, width=32, num_classes=10, hidden=16,
                                 minibatch_std=std), seed=0)
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        y = torch.arange(8) % 10
        before = D(x, y)
        x[5] = 1 - x[5]  # change image 5 (group 4..7)
        after = D(x, y)
        assert torch.equal(before[:4], after[:4])            # the first group: untouched
        assert torch.equal(before[[4, 6, 7]], after[[4, 6, 7]]) != std  # its group: moved with it
    f = torch.rand(12, 5, 2, 3, generator=torch.Generator().manual_seed(1))
    spread = f.view(3, 4, 5, 2, 3).var(1, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))  # the textbook form
    torch.testing.assert_close(group_std(f)[:, 0, 0, 0], spread.repeat_interleave(4))


@pytest.mark.parametrize("batch", [8, 6])
def test_training_keeps_reals_and_fakes_in_separate_minibatch_std_groups(batch):
    """D sees reals and fakes in one call when the batch is a multiple of 4 (every group is all
    real or all fake, and groups do not mix: the test above) and in two calls otherwise."""
    cfg = ModelConfig(kind="dcgan", channels=3, height=16, width=16, num_classes=4, hidden=8)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (12, 3, 16, 16), dtype=np.uint8))
    seen = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(len(args[0])) if isinstance(module, DCDiscriminator) else None)
    try:
        train(TrainConfig(steps=1, batch_size=batch, grid_every=0, checkpoint_every=0), cfg, x, torch.arange(12) % 4)
    finally:
        hook.remove()
    assert seen == ([2 * batch, batch] if batch % 4 == 0 else [batch, batch, batch])  # D step, then G step


def test_latent_modulation_starts_as_batchnorm_and_learns_from_the_noise():
    """Each G stage's BatchNorm gain and bias are linear in (noise, label) (BigGAN's conditional
    BatchNorm): a new generator draws what plain BatchNorm draws, training moves the modulation
    off zero, and a config stored before the field builds plain BatchNorm."""
    cfg = ModelConfig(kind="dcgan", channels=3, height=32, width=32, num_classes=10, hidden=16)
    G, _ = build(cfg, seed=0)
    plain, _ = build(replace(cfg, latent_modulation=False), seed=0)
    z, y = noise_for_seeds(np.arange(6), cfg.z_dim), torch.arange(6)
    assert torch.equal(G.eval()(z, y), plain.eval()(z, y))
    assert len(G.modulation) == 3 and plain.modulation is None  # one per stage
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    res = train(TrainConfig(steps=3, batch_size=8, grid_every=0, checkpoint_every=0), cfg, x, torch.arange(16) % 10)
    assert all(m.weight.abs().sum().item() > 0 for m in res.generator.modulation)
    stored = {k: v for k, v in cfg.to_dict().items() if k != "latent_modulation"}
    assert ModelConfig.from_dict(stored).latent_modulation is False
