"""The flow's parameters as the Prefect UI's form sees them: the model is a typed choice and each
model brings its own defaults."""

import json

import pytest

from flows.deployments import form_defaults
from flows.params import DCGANParams, MLPParams, VirtualizeParams
from gan.dcgan import stages


def test_each_model_brings_its_own_defaults():
    assert VirtualizeParams().train == MLPParams()
    dcgan = VirtualizeParams(train={"model": "dcgan"}).train
    assert isinstance(dcgan, DCGANParams)
    assert (dcgan.steps, dcgan.batch_size, dcgan.lr, dcgan.lr_schedule, dcgan.probe_every, dcgan.width,
            dcgan.mode_seeking, dcgan.mode_seeking_cap, dcgan.r1) == (5_500, 64, 8e-4, "cosine", 1_000, 64, 0.1, 1.0, 1.0)
    assert dcgan.config().r1 == 1.0 and MLPParams().r1 == 0.0
    assert dcgan.config().mode_seeking_cap == 1.0 and MLPParams().config().mode_seeking_cap == 0.0
    mlp = VirtualizeParams(train={"steps": 5}).train  # no model named: the default one
    assert isinstance(mlp, MLPParams) and (mlp.steps, mlp.lr, mlp.lr_schedule) == (5, 2e-4, "constant")


def test_the_form_offers_the_models_and_starts_from_the_model_alone():
    from flows.virtualize import virtualize

    schema = json.dumps(virtualize.parameters.model_dump())
    assert '"const": "mlp"' in schema and '"const": "dcgan"' in schema and '"anyOf"' in schema and "oneOf" not in schema
    assert "mlp (the seed GAN)" in schema and "dcgan (conditional conv GAN)" in schema
    start = form_defaults("digits")
    assert start["train"] == {"model": "mlp"} and start["source"] == "digits"
    picked = {**start, "train": {**start["train"], "model": "dcgan"}}  # what the form sends
    assert VirtualizeParams(**picked).train == DCGANParams()


def test_the_default_model_follows_the_source():
    """The seed MLP where it passes its gates (digits); the DCGAN for any other source, also
    when only other training fields are given; a named model is always kept."""
    assert VirtualizeParams(source="digits").train.model == "mlp"
    assert VirtualizeParams(source="photos/").train.model == "dcgan"
    assert VirtualizeParams(source="photos/", train={"steps": 5}).train.steps == 5
    assert VirtualizeParams(source="photos/", train={"steps": 5}).train.model == "dcgan"
    assert VirtualizeParams(source="photos/", train={"model": "mlp"}).train.model == "mlp"


def test_a_dp_run_takes_the_dcgans_dp_recipe_where_it_sets_nothing():
    """DP-SGD wants other settings (large batches, several private D steps, a smaller model):
    with ``dp_epsilon`` the DCGAN's unset fields take ``DP_RECIPE``; given ones win; the MLP
    and a run without DP keep their defaults; the model under DP has one conv per D stage."""
    from flows.params import DP_RECIPE
    from snapshots.store import Snapshot
    from tasks.train import model_config

    private = VirtualizeParams(source="photos/", train={"dp_epsilon": 10}).train
    assert {k: getattr(private, k) for k in DP_RECIPE} == DP_RECIPE and private.width == DP_RECIPE["channels"]
    mine = DCGANParams(dp_epsilon=10, batch_size=64, steps=7)
    assert (mine.batch_size, mine.steps, mine.d_steps) == (64, 7, DP_RECIPE["d_steps"])
    assert DCGANParams() == DCGANParams(dp_epsilon=None) and DCGANParams().batch_size == 64
    assert MLPParams(dp_epsilon=10).batch_size == MLPParams().batch_size
    assert private.r1 == 0.0  # DP-SGD does not cover a gradient penalty: asking for both is refused
    with pytest.raises(ValueError, match="r1: 0.1 cannot be used with dp_epsilon"):
        DCGANParams(dp_epsilon=10, r1=0.1)
    assert private.mode_seeking_cap == 0.0  # the cap is measured on the real images: not under DP
    with pytest.raises(ValueError, match="mode_seeking_cap: 1.0 cannot be used with dp_epsilon"):
        DCGANParams(dp_epsilon=10, mode_seeking_cap=1.0)
    snapshot = Snapshot("s", "f", "mnist", (1, 28, 28), 10_000, 10, 8_000, 2_000)
    dp, plain = model_config(snapshot, "dcgan", None, 32, private=True), model_config(snapshot, "dcgan", None, 64)
    assert (dp.d_convs, dp.minibatch_std, stages(dp)) == (1, False, 2)  # the model the DP recipe was measured with
    assert (plain.d_convs, plain.minibatch_std, stages(plain)) == (2, True, 3)
