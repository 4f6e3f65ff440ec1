"""The configuration of a generator/discriminator pair: every model family reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"       # a key of MODELS
    channels: int = 1       # image channels
    height: int = 28        # image rows
    width: int = 28         # image columns
    num_classes: int = 0    # 0: unconditional; K: labels 0..K-1 condition both networks
    z_dim: int = 100        # noise dimension
    hidden: int = 128       # width of both hidden layers
    embed_dim: int = 16     # label embedding size (conditional only)
    spectral_norm: bool = False  # spectral normalisation of D's layers (Miyato et al. 2018)
    stages: int = 0         # dcgan: up-/down-sampling stages (0: follow the resolution, see gan.dcgan)
    min_stages: int = 3     # dcgan: the fewest stages when they follow the resolution (3: a 4x4 base up to 32 px)
    noise: str = "splitmix64-quantile16"  # how a seed becomes noise: a key of gan.sampling.NOISE
    d_convs: int = 2        # dcgan: D's convolutions per stage (1: the stride-2 one; 2: and a 3x3 after it)
    minibatch_std: bool = True  # dcgan: D sees the spread of each group of 4 images (not under DP)
    latent_modulation: bool = True  # dcgan: each G stage's BatchNorm gain and bias follow the noise and label

    @property
    def pixels(self) -> int:
        return self.channels * self.height * self.width

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> "ModelConfig":
        """A config as stored with a checkpoint or weights file. Fields it predates take the
        behaviour it was trained and published with (``LEGACY``), not today's defaults, so a
        generator registered before them still builds and samples the same pixels."""
        return cls(**{**LEGACY, **stored})


# what configs stored before these fields existed meant: two DCGAN stages at any size, at least
# two when they follow the resolution, one torch.Generator per seed, one convolution per D stage,
# no minibatch standard deviation, G's BatchNorm with its own fixed gain and bias
LEGACY = {"stages": 2, "min_stages": 2, "noise": "torch-generator", "d_convs": 1, "minibatch_std": False,
          "latent_modulation": False}
