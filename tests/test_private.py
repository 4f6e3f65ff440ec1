"""DP-SGD for the discriminator: the ε reported is opacus's accountant's, every real row's
gradient is clipped to the bound before the noise, and the probe cannot select under DP."""

import dataclasses

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from gan.config import ModelConfig
from gan.models import build
from gan.private import default_delta, make_private, noise_multiplier, spent
from gan.train import TrainConfig, train

MODEL = ModelConfig(kind="dcgan", channels=1, height=8, width=8, num_classes=3, hidden=8, minibatch_std=False)


def data(n=300):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 3


def test_reported_epsilon_is_the_accountants():
    images, labels = data()
    cfg = TrainConfig(steps=30, batch_size=16, dp_epsilon=3.0, log_every=10, grid_every=0, checkpoint_every=0)
    result = train(cfg, MODEL, images, labels)
    p = result.privacy
    assert p.sample_rate == 16 / 300 and p.steps == 30 and p.delta == default_delta(300) == 1 / 3000
    direct = RDPAccountant()
    for _ in range(30):
        direct.step(noise_multiplier=p.noise_multiplier, sample_rate=p.sample_rate)
    assert p.epsilon == pytest.approx(direct.get_epsilon(delta=p.delta), rel=1e-12)
    assert 2.9 <= p.epsilon <= 3.0  # calibrated to the target, from below
    assert spent(p.noise_multiplier, p.sample_rate, 30, p.delta) == p.epsilon
    again = train(cfg, MODEL, images, labels)  # seeded: noise included, the same weights
    for a, b in zip(result.ema.state_dict().values(), again.ema.state_dict().values()):
        assert torch.equal(a, b)


def test_every_real_rows_gradient_is_clipped_before_the_noise():
    _, D = build(MODEL, seed=0)
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    bound, sigma = 0.05, 0.7
    D, opt = make_private(D, opt, sigma, bound, batch=8, generator=gen)
    x, y = torch.rand(8, 1, 8, 8) * 4, torch.arange(8) % 3  # large inputs: large per-row gradients
    opt.zero_grad(set_to_none=True)
    D(x, y).sum().backward()
    params = [p for p in D.parameters() if p.requires_grad]
    per_row = torch.stack([p.grad_sample.reshape(8, -1).norm(dim=1) for p in params]).norm(dim=0)
    assert (per_row > bound).all()  # every row needs clipping
    factor = (bound / (per_row + 1e-6)).clamp(max=1.0)
    clipped = [torch.einsum("i,i...->...", factor, p.grad_sample) for p in params]
    opt.clip_and_accumulate()
    for p, expected in zip(params, clipped):
        torch.testing.assert_close(p.summed_grad, expected)
    clipped_rows = torch.stack([(p.grad_sample * factor.view(-1, *[1] * (p.grad_sample.dim() - 1))).reshape(8, -1).norm(dim=1)
                                for p in params]).norm(dim=0)
    assert (clipped_rows <= bound * (1 + 1e-4)).all()
    opt.add_noise()
    noise = torch.cat([(p.grad - p.summed_grad).flatten() for p in params])
    assert noise.std().item() == pytest.approx(sigma * bound, rel=0.05)  # σ·C on the clipped sum


def test_noise_multiplier_reaches_the_target():
    sigma = noise_multiplier(10.0, 1e-5, 64 / 8000, 20_000)
    assert 9.9 <= spent(sigma, 64 / 8000, 20_000, 1e-5) <= 10.0
    assert noise_multiplier(1.0, 1e-5, 64 / 8000, 20_000) > sigma  # less ε, more noise


def test_the_probe_cannot_select_under_dp():
    images, labels = data()
    with pytest.raises(ValueError, match="probe_every must be 0 with dp_epsilon"):
        train(TrainConfig(steps=5, dp_epsilon=1.0, probe_every=1), MODEL, images, labels, probe=lambda g: 0.0)


def test_dp_refuses_a_discriminator_that_mixes_images():
    images, labels = data()
    with pytest.raises(ValueError, match="minibatch_std off"):
        train(TrainConfig(steps=5, dp_epsilon=1.0), dataclasses.replace(MODEL, minibatch_std=True), images, labels)


def test_fakes_are_conditioned_on_uniform_labels_under_dp():
    """Every class appears among the fakes' labels even where the real data has one class only
    in a step: the generator's conditioning does not follow the real class counts."""
    images = data()[0]
    labels = torch.zeros(300, dtype=torch.long)
    labels[:3] = torch.tensor([1, 2, 1])  # 99% class 0
    seen = []
    import gan.train as tr
    original = tr._batch

    def spy(*args, **kw):
        out = original(*args, **kw)
        seen.append(out[3])
        return out
    tr._batch = spy
    try:
        train(TrainConfig(steps=20, batch_size=16, dp_epsilon=5.0, log_every=10, grid_every=0, checkpoint_every=0),
              MODEL, images, labels)
    finally:
        tr._batch = original
    counts = np.bincount(torch.cat(seen).numpy(), minlength=3)
    assert counts.min() > 0.2 * counts.sum()


def test_budget_manifest_tags_and_gate(prefect_server, capfd):
    """A DP run records ε, δ and what they cover (run params, version tags, manifest, page); a
    non-DP one records null; a run that would pass the source's budget is refused in one line
    before training, leaving no MLflow version and no catalog version; max_epsilon fails a
    run without DP."""
    import catalog
    from catalog.page import dataset_page
    from flows.params import EvalParams, MLPParams, PublishParams, VirtualizeParams
    from flows.virtualize import virtualize
    from ganvirt import settings
    from ganvirt.cli import main
    from tasks.gates import GatePolicy
    from tasks.tracking import client
    from tests.conftest import open_gates

    small = dict(evaluation=EvalParams(classifier_steps=20, num_samples=200), publication=PublishParams(n=30),
                 gate=open_gates())
    plain = virtualize(VirtualizeParams(name="dp-plain", train=MLPParams(steps=30, batch_size=32), **small))
    assert catalog.manifest(plain["dataset"])["privacy"]["epsilon"] is None
    assert client().get_model_version("dp-plain-generator", plain["version"]).tags["dp.epsilon"] == "none"

    dp = virtualize(VirtualizeParams(name="dp", epsilon_budget=3, train=MLPParams(steps=30, batch_size=32, dp_epsilon=2),
                                     **small))
    m = catalog.manifest(dp["dataset"])
    p = m["privacy"]
    num_train = int(client().get_run(dp["run_id"]).data.params["num_train"])
    assert 1.9 <= p["epsilon"] <= 2.0 and p["delta"] == 1 / (10 * num_train) and p["steps"] == 30
    assert p["accountant"] == "rdp" and "train split" in p["covers"] and "holdout" in p["outside"]
    assert p["sample_rate"] == 32 / num_train and p["noise_multiplier"] > 0
    tags = client().get_model_version("dp-generator", dp["version"]).tags
    assert float(tags["dp.epsilon"]) == p["epsilon"] and tags["dp.source_fingerprint"] == m["source"]["fingerprint"]
    assert "ε = " in dataset_page("dp", {m["version"]: m})

    versions = [v.version for v in client().search_model_versions("name='dp-generator'")]
    published = catalog.versions_of(settings.catalog_root(), "dp")
    capfd.readouterr()
    code = main(["run", "--name", "dp", "--epsilon-budget", "3", "--dp-epsilon", "2", "--steps", "30",
                 "--batch-size", "32", "--eval-samples", "200", "--classifier-steps", "20", "-n", "30"])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ganvirt: error:")]
    assert code == 1 and len(lines) == 1, err[-2000:]
    assert f"ε budget 3 has {p['epsilon'] and 2:g} spent by 1 DP run(s); this run requests 2 and 1 remains" in lines[0]
    assert [v.version for v in client().search_model_versions("name='dp-generator'")] == versions
    assert catalog.versions_of(settings.catalog_root(), "dp") == published

    policy = GatePolicy(max_epsilon=5)
    assert not policy.thresholds(plain["metrics"])["epsilon"]["passed"]  # no DP: fails closed
    assert policy.thresholds(dp["metrics"])["epsilon"]["passed"]
    assert not GatePolicy(max_epsilon=1).thresholds(dp["metrics"])["epsilon"]["passed"]


def test_dp_turns_the_probe_off_in_the_flows_parameters():
    from flows.params import DCGANParams

    assert DCGANParams().config().probe_every == 1000
    assert DCGANParams(dp_epsilon=10).config().probe_every == 0
    with pytest.raises(ValueError, match="one process"):
        DCGANParams(dp_epsilon=10, nproc=2)
