"""Typed flow parameters: they render as a form in the Prefect UI and validate CLI input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gan.augment import parse as parse_augment
from gan.evaluate import EvalConfig
from gan.features import ClassifierConfig
from gan.train import TrainConfig
from snapshots.images import ImageOptions, parse_size
from tasks.gates import GatePolicy

# The fields every model shares, with their bounds; each model's class below sets its defaults.
Steps = Annotated[int, Field(ge=1, le=10_000_000, description="generator updates")]
BatchSize = Annotated[int, Field(ge=1, le=65_536, description="images per step")]
LearningRate = Annotated[float, Field(gt=0, le=1, description="Adam learning rate, both networks (the peak, under a schedule)")]
Schedule = Annotated[Literal["constant", "cosine"], Field(description="learning rate over the steps: constant, or cosine decay to 0")]
ProbeEvery = Annotated[int, Field(ge=0, description="steps between FID-like probes, and one at the last step; the best EMA is registered (0: none)")]


class TrainParams(BaseModel):
    """Training parameters every model shares; ``MLPParams`` and ``DCGANParams`` name the model
    and bring its own defaults."""
    model_config = ConfigDict(extra="forbid")  # a field of another model is an error, not ignored

    model: str
    steps: Steps = 8_000
    batch_size: BatchSize = 128
    lr: LearningRate = 2e-4
    lr_schedule: Schedule = "constant"
    probe_every: ProbeEvery = 0
    loss: Literal["bce", "hinge"] = Field("bce", description="non-saturating BCE or hinge")
    ema_beta: float = Field(0.999, ge=0, lt=1, description="EMA decay of the served generator (0: off)")
    augment: str = Field("", description="DiffAugment policies for the discriminator's inputs: 'translation', 'cutout', both comma-separated, or '' / 'none'")
    seed: int = Field(0, ge=0, description="fixes weights, batches and noise")
    conditional: bool | None = Field(None, description="label-conditional; default: when the source has labels")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("cpu", description="where to train (bf16 autocast on cuda)")
    nproc: int = Field(1, ge=1, le=64, description="DDP processes started by torchrun (one per GPU on cuda; 1: train in the flow's process)")
    checkpoint_every: int = Field(1_000, ge=0, description="steps between resumable checkpoints (0: none)")
    patience: int = Field(0, ge=0, description="probes without improvement before stopping early (0: never)")
    d_steps: int = Field(1, ge=1, le=100, description="discriminator updates per generator step (DP runs: several, each a private step)")
    mode_seeking: float = Field(0.0, ge=0, le=100, description="weight of MSGAN's mode-seeking term in the generator's loss: keeps a conditional generator from ignoring its noise (0: off)")
    mode_seeking_cap: float = Field(0.0, ge=0, le=100, description="mode seeking pushes a pair of fakes apart only until they differ this many times as much as two real images of their class do: more would buy ink and contrast the data lacks (0: no cap; not with DP: it reads the real images)")
    r1: float = Field(0.0, ge=0, le=1000, description="weight γ of the R1 penalty (γ/2)·‖∇D(real)‖², every 4th step: keeps the discriminator smooth around the real images, so the generator does not drop modes (0: off; not with DP)")
    dp_epsilon: float | None = Field(None, gt=0, le=1000, description="train the discriminator with DP-SGD to spend this ε by the last step (default: no DP; turns the probe off; the dcgan's fields not given then take its DP recipe: batch 512, 3 D steps, width 32, 1,000 steps, EMA 0.99, mode seeking 0.15, no R1)")
    dp_delta: float | None = Field(None, gt=0, lt=1, description="δ of the DP guarantee (default: 1 / (10 x train images), below 1/n)")

    @field_validator("augment", mode="before")
    @classmethod
    def _known_policies(cls, value: str | None) -> str:
        return ",".join(parse_augment(value or ""))

    @property
    def width(self) -> int:
        """The model's size knob (``ModelConfig.hidden``): each model names its own."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _dp_in_one_process(self):
        if self.dp_epsilon and self.nproc > 1:
            raise ValueError("dp_epsilon: DP training runs in one process (nproc 1)")
        if self.dp_epsilon and self.mode_seeking_cap:
            raise ValueError(f"mode_seeking_cap: {self.mode_seeking_cap} cannot be used with dp_epsilon (the cap is measured "
                             f"on the real images, outside the guarantee); set it to 0")
        if self.dp_epsilon and self.r1:
            raise ValueError(f"r1: {self.r1} cannot be used with dp_epsilon (DP-SGD does not cover a gradient penalty); set it to 0")
        return self

    def config(self) -> TrainConfig:
        """The library's config. With DP the probe is off: it would select on real train
        images, outside the guarantee, so the registered model is the DP-trained last EMA."""
        log_every = 100 if self.checkpoint_every % 100 == 0 else self.checkpoint_every or 100
        return TrainConfig(batch_size=self.batch_size, steps=self.steps, lr=self.lr, lr_schedule=self.lr_schedule, loss=self.loss,
                           ema_beta=self.ema_beta, augment=self.augment, seed=self.seed, log_every=log_every,
                           checkpoint_every=self.checkpoint_every, probe_every=0 if self.dp_epsilon else self.probe_every,
                           patience=0 if self.dp_epsilon else self.patience, dp_epsilon=self.dp_epsilon or 0.0,
                           dp_delta=self.dp_delta or 0.0, d_steps=self.d_steps, mode_seeking=self.mode_seeking,
                           mode_seeking_cap=self.mode_seeking_cap, r1=self.r1)


class MLPParams(TrainParams):
    """The seed GAN of the blog post, faithfully: G 100→128→128→pixels, D pixels→128→128→1,
    Adam 2e-4 (cheap per step; it does not reach the quality bar on MNIST)."""
    model_config = ConfigDict(title="mlp (the seed GAN)", extra="forbid")
    model: Literal["mlp"] = Field("mlp", description="the seed GAN")
    # a name of its own (not the DCGAN's `channels`): Prefect's form tells the models apart by
    # the fields a value has
    hidden: int = Field(128, ge=4, le=4096, description="mlp: width of both hidden layers")

    @property
    def width(self) -> int:
        return self.hidden


class DCGANParams(TrainParams):
    """The conditional conv GAN. Its budget (5,500 steps of 64: 17.1 and 18.1 minutes at 32x32 RGB
    on 2 CPU cores in two runs alone, for the three-stage model; the two-stage one had 8,000 and
    reached less), mode-seeking weight and cap, R1 weight, learning rate, schedule and probe come from
    measurements on MNIST and colour MNIST (README, "Colour MNIST", "Mode seeking's cap" and "How the
    DCGAN's settings were chosen")."""
    model_config = ConfigDict(title="dcgan (conditional conv GAN)", extra="forbid")
    model: Literal["dcgan"] = Field("dcgan", description="the conditional conv GAN")
    channels: int = Field(64, ge=4, le=4096, description="dcgan: channels at the smallest resolution (halved at each up-sampling stage)")
    steps: Steps = 5_500
    batch_size: BatchSize = 64
    lr: LearningRate = 8e-4
    lr_schedule: Schedule = "cosine"
    probe_every: ProbeEvery = 1_000
    mode_seeking: float = Field(0.1, ge=0, le=100, description=TrainParams.model_fields["mode_seeking"].description)
    mode_seeking_cap: float = Field(1.0, ge=0, le=100, description=TrainParams.model_fields["mode_seeking_cap"].description)
    r1: float = Field(1.0, ge=0, le=1000, description=TrainParams.model_fields["r1"].description)

    @model_validator(mode="before")
    @classmethod
    def _dp_recipe(cls, data):
        """With ``dp_epsilon``, the fields not given take ``DP_RECIPE``."""
        if isinstance(data, dict) and data.get("dp_epsilon"):
            return {**DP_RECIPE, **data}
        return data

    @property
    def width(self) -> int:
        return self.channels


# The DCGAN's settings under DP-SGD, for the fields a DP run does not set (measured on the MNIST
# split: README, "Formal privacy"). The noise of a private step is spread over its batch, so a
# large batch (512, q = 0.064 on 8,000 images) gives far less noise per image than 64 at the same
# ε; a narrower network (32: D about 26k parameters with one convolution per stage) gets less
# noise in all; three private D steps per G step keep the noisy D from falling behind G; a
# stronger mode-seeking term keeps G from collapsing onto what the noisy D lets through; and
# the EMA follows the few (large) steps more closely. No R1: per-sample clipping does not cover it.
DP_RECIPE = {"batch_size": 512, "d_steps": 3, "channels": 32, "steps": 1_000, "checkpoint_every": 200, "ema_beta": 0.99, "mode_seeking": 0.15, "mode_seeking_cap": 0.0, "r1": 0.0}


MODELS: dict[str, type[TrainParams]] = {"mlp": MLPParams, "dcgan": DCGANParams}


def default_model(source: str) -> tuple[str, str]:
    """The model a source gets when none is named, and why: the seed MLP where it passes its
    gates (``digits``), the DCGAN for every other source (the MLP collapsed on a 28x28 RGB folder:
    recall 0.005, TSTR 0.43 against TRTR 0.84)."""
    if source.strip() == "digits":
        return "mlp", "the default for 'digits', where the seed MLP passes its gates"
    return "dcgan", "the default for every source but 'digits': the seed MLP collapses on them, the DCGAN passes its gates on MNIST"
AnyTrainParams = Annotated[MLPParams | DCGANParams, Field(discriminator="model")]


class EvalParams(BaseModel):
    classifier_steps: int = Field(ClassifierConfig.steps, ge=1, le=1_000_000, description="budget of the extractor / TSTR / TRTR classifier")
    num_samples: int = Field(10_000, ge=10, le=1_000_000, description="generated images scored against the real holdout")
    k: int = Field(5, ge=1, le=100, description="nearest neighbours for precision/recall/density/coverage")
    seed: int = Field(0, ge=0, description="seeds of the evaluation samples and classifiers")
    tstr_repeats: int = Field(EvalConfig.tstr_repeats, ge=1, le=20, description="classifiers trained on the generated "
                              "images (successive seeds): tstr_accuracy is their mean, tstr_accuracy.std their spread")

    def config(self) -> EvalConfig:
        return EvalConfig(ClassifierConfig(steps=self.classifier_steps, seed=self.seed),
                          num_samples=self.num_samples, k=self.k, seed=self.seed, tstr_repeats=self.tstr_repeats)


class PublishParams(BaseModel):
    n: int = Field(10_000, ge=1, le=10_000_000, description="images in the published dataset")
    seed: int = Field(0, ge=0, description="image i uses seed + i")
    format: Literal["npz", "png", "parquet"] = Field("npz", description="file format of the published data")
    virtual: bool = Field(False, description="publish a manifest only (kilobytes); 'ganvirt pull' materialises it from the registry")


def _models_as_choice(schema: dict) -> None:
    """The training section's models as ``anyOf`` in the JSON schema: the Prefect UI's form
    renders ``anyOf`` as a choice with each model's fields (it falls back to a JSON editor for
    pydantic's ``oneOf`` + ``discriminator``); validation here still picks by ``model``."""
    train = schema["properties"]["train"]
    if "oneOf" in train:
        train["anyOf"] = train.pop("oneOf")
        train.pop("discriminator", None)


class VirtualizeParams(BaseModel):
    model_config = ConfigDict(json_schema_extra=_models_as_choice)

    source: str = Field("digits", description="'digits', an IDX folder/files/URLs, an image folder (class sub-folders, labels.csv or flat) or an .npz")
    name: str | None = Field(None, description="dataset name (default: derived from the source)")
    holdout: float = Field(0.2, gt=0, lt=1, description="share of the real data held out for evaluation")
    image_size: str | None = Field(None, description="image folders: resize and centre-crop every image to N or HxW (default: the common size; mixed sizes: the commonest, at most 128 px a side)")
    channels: Literal[1, 3] | None = Field(None, description="image folders: 1 (grey) or 3 (RGB) channels (default: 3 when any image has colour, else 1)")
    max_undecodable: float = Field(0.0, ge=0, lt=1, description="image folders: share of files that may fail to decode and be skipped (over it, the run fails)")
    epsilon_budget: float | None = Field(None, gt=0, description="DP runs: the ε all runs on this source may spend together (default: GANVIRT_EPSILON_BUDGET, else none)")
    train: AnyTrainParams = Field(default_factory=MLPParams, description="the model and how to train it; each model brings its own defaults (default model: mlp for 'digits', dcgan for any other source)")
    evaluation: EvalParams = EvalParams()
    gate: GatePolicy = GatePolicy()
    publication: PublishParams = PublishParams()

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data):
        """A train section that names no model (absent, or ``--steps 5`` alone) trains the
        source's default model (``default_model``)."""
        if not isinstance(data, dict):
            return data
        train = data.get("train", {})
        if isinstance(train, dict) and "model" not in train:
            data = {**data, "train": {"model": default_model(str(data.get("source", "digits")))[0], **train}}
        return data

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value):
        if value in (None, ""):
            return None
        h, w = parse_size(value)
        return f"{h}x{w}"

    def image_options(self) -> ImageOptions:
        return ImageOptions(parse_size(self.image_size) if self.image_size else None, self.channels, self.max_undecodable)

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
