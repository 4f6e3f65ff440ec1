"""Typed flow parameters: they render as a form in the Prefect UI and validate CLI input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gan.augment import parse as parse_augment
from gan.evaluate import EvalConfig
from gan.features import ClassifierConfig
from gan.train import TrainConfig
from tasks.gates import GatePolicy

# Each model's own defaults, filled in where a run does not set the field: the seed MLP is
# cheap per step; the DCGAN's budget (20,000 steps of 64, about 14 minutes on 2 CPU cores), its
# learning rate and schedule, and its probe come from measurements on MNIST (README, "Measured here").
MODEL_DEFAULTS: dict[str, dict] = {
    "mlp": {"steps": 8_000, "batch_size": 128, "lr": 2e-4, "lr_schedule": "constant", "probe_every": 0, "augment": ""},
    "dcgan": {"steps": 20_000, "batch_size": 64, "lr": 8e-4, "lr_schedule": "cosine", "probe_every": 1_000, "augment": ""},
}


def per_model(field: str) -> str:
    """'default: 8000 (mlp) / 20000 (dcgan)' for a field that MODEL_DEFAULTS fills."""
    return "default: " + " / ".join(f"{d[field] if d[field] != '' else 'none'} ({m})" for m, d in MODEL_DEFAULTS.items())


class TrainParams(BaseModel):
    model: str = Field("mlp", description="generator family: 'mlp' (the seed GAN) or 'dcgan' (conditional conv GAN)")
    width: int | None = Field(None, ge=4, le=4096, description="hidden width (mlp) or base channels (dcgan); default 128 / 64")
    steps: int = Field(8_000, ge=1, le=10_000_000, description=f"generator updates; {per_model('steps')}")
    batch_size: int = Field(128, ge=1, le=65_536, description=f"images per step; {per_model('batch_size')}")
    lr: float = Field(2e-4, gt=0, le=1, description="Adam learning rate, both networks; default 2e-4 (mlp, the seed's) / 8e-4 (dcgan)")
    loss: Literal["bce", "hinge"] = Field("bce", description="non-saturating BCE or hinge")
    lr_schedule: Literal["constant", "cosine"] | None = Field(None, description="learning rate over the steps: constant, or cosine decay to 0; default constant (mlp) / cosine (dcgan)")
    ema_beta: float = Field(0.999, ge=0, lt=1, description="EMA decay of the served generator (0: off)")
    augment: str | None = Field(None, description="DiffAugment policies for the discriminator's inputs: 'translation', 'cutout', both comma-separated, or 'none'; default none")
    seed: int = Field(0, ge=0, description="fixes weights, batches and noise")
    conditional: bool | None = Field(None, description="label-conditional; default: when the source has labels")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("cpu", description="where to train (bf16 autocast on cuda)")
    nproc: int = Field(1, ge=1, le=64, description="DDP processes started by torchrun (one per GPU on cuda; 1: train in the flow's process)")
    checkpoint_every: int = Field(1_000, ge=0, description="steps between resumable checkpoints (0: none)")
    probe_every: int = Field(0, ge=0, description=f"steps between FID-like probes; the best EMA is registered (0: none); {per_model('probe_every')}")
    patience: int = Field(0, ge=0, description="probes without improvement before stopping early (0: never)")

    @field_validator("augment")
    @classmethod
    def _known_policies(cls, value: str | None) -> str:
        return ",".join(parse_augment(value or ""))

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data):
        if isinstance(data, dict):
            for key, value in MODEL_DEFAULTS.get(data.get("model", "mlp"), {}).items():
                if data.get(key) is None:
                    data = {**data, key: value}
        return data

    def config(self) -> TrainConfig:
        log_every = 100 if self.checkpoint_every % 100 == 0 else self.checkpoint_every or 100
        return TrainConfig(batch_size=self.batch_size, steps=self.steps, lr=self.lr, lr_schedule=self.lr_schedule, loss=self.loss,
                           ema_beta=self.ema_beta, augment=self.augment or "", seed=self.seed, log_every=log_every,
                           checkpoint_every=self.checkpoint_every, probe_every=self.probe_every,
                           patience=self.patience)


class EvalParams(BaseModel):
    classifier_steps: int = Field(ClassifierConfig.steps, ge=1, le=1_000_000, description="budget of the extractor / TSTR / TRTR classifier")
    num_samples: int = Field(10_000, ge=10, le=1_000_000, description="generated images scored against the real holdout")
    k: int = Field(5, ge=1, le=100, description="nearest neighbours for precision/recall/density/coverage")
    seed: int = Field(0, ge=0, description="seeds of the evaluation samples and classifiers")

    def config(self) -> EvalConfig:
        return EvalConfig(ClassifierConfig(steps=self.classifier_steps, seed=self.seed),
                          num_samples=self.num_samples, k=self.k, seed=self.seed)


class PublishParams(BaseModel):
    n: int = Field(10_000, ge=1, le=10_000_000, description="images in the published dataset")
    seed: int = Field(0, ge=0, description="image i uses seed + i")
    format: Literal["npz", "png", "parquet"] = Field("npz", description="file format of the published data")
    virtual: bool = Field(False, description="publish a manifest only (kilobytes); 'ganvirt pull' materialises it from the registry")


class VirtualizeParams(BaseModel):
    source: str = Field("digits", description="'digits', an IDX folder/files/URLs, an image folder or an .npz")
    name: str | None = Field(None, description="dataset name (default: derived from the source)")
    holdout: float = Field(0.2, gt=0, lt=1, description="share of the real data held out for evaluation")
    train: TrainParams = TrainParams()
    evaluation: EvalParams = EvalParams()
    gate: GatePolicy = GatePolicy()
    publication: PublishParams = PublishParams()

    def dataset_name(self) -> str:
        return self.name or name_from_source(self.source)


def name_from_source(source: str) -> str:
    """``digits`` → digits; ``../data/mnist/`` → mnist; ``x/faces.npz`` → faces; IDX files → prefix."""
    first = source.split(",")[0].split("?", 1)[0].split("#", 1)[0].rstrip("/")  # no query (tokens) in names
    stem = Path(first.rsplit("/", 1)[-1]).name
    stem = re.sub(r"(-(images|labels)-idx\d-ubyte)?(\.gz)?$", "", stem)
    stem = re.sub(r"\.npz$", "", stem)
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return slug[:63] or "dataset"
