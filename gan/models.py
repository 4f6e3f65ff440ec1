"""Generator and discriminator networks, picked by name from a typed registry.

The seed GAN (a TensorFlow 1 MNIST blog post) is kept faithfully as ``mlp``: noise 100-d
standard normal, G 100→128→128→pixels with leaky ReLU and a sigmoid output, D pixels→128→128→1
logit with leaky ReLU. It is generalised to any image shape and gains an optional label
embedding fed to both networks (``num_classes > 0``), so that synthetic data comes labelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn


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

    @property
    def pixels(self) -> int:
        return self.channels * self.height * self.width

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict:
        return asdict(self)


class MLPGenerator(nn.Module):
    """z (B, z_dim) [+ labels (B,)] → images (B, C, H, W) in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        extra = cfg.embed_dim if cfg.conditional else 0
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim + extra, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, cfg.pixels),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = z if self.embed is None else torch.cat([z, self.embed(labels)], dim=1)
        c = self.cfg
        return self.net(h).view(-1, c.channels, c.height, c.width)


class MLPDiscriminator(nn.Module):
    """images (B, C, H, W) in [0, 1] [+ labels (B,)] → logits (B,)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        extra = cfg.embed_dim if cfg.conditional else 0
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        self.net = nn.Sequential(
            nn.Linear(cfg.pixels + extra, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.embed is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        return self.net(h).squeeze(1)


ModelPair = tuple[Callable[[ModelConfig], nn.Module], Callable[[ModelConfig], nn.Module]]

def _dcgan() -> ModelPair:
    from gan.dcgan import DCDiscriminator, DCGenerator  # gan.dcgan imports ModelConfig from here

    return DCGenerator, DCDiscriminator


MODELS: dict[str, ModelPair] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
}
MODELS["dcgan"] = _dcgan()


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every layer from ``generator`` so that a seed alone fixes the weights.

    Xavier-uniform weights and zero biases (the seed's TF1 defaults), unit-normal embeddings;
    drawing from an explicit generator keeps the global RNG untouched.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()
        elif isinstance(m, nn.Embedding):
            with torch.no_grad():
                m.weight.normal_(0.0, 1.0, generator=generator)


def build(cfg: ModelConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for ``cfg`` with weights fixed by ``seed``."""
    if cfg.kind not in MODELS:
        raise ValueError(f"unknown model {cfg.kind!r}; choose from {sorted(MODELS)}")
    g_cls, d_cls = MODELS[cfg.kind]
    gen = torch.Generator().manual_seed(seed)
    G, D = g_cls(cfg), d_cls(cfg)
    init_weights(G, gen)
    init_weights(D, gen)
    if cfg.spectral_norm:
        with torch.random.fork_rng(devices=[]):  # the power iteration's start vectors, seeded
            torch.manual_seed(seed)
            for m in list(D.modules()):
                if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)
    return G, D


def build_generator(cfg: ModelConfig) -> nn.Module:
    """An uninitialised generator for ``cfg``, ready for ``load_state_dict``."""
    if cfg.kind not in MODELS:
        raise ValueError(f"unknown model {cfg.kind!r}; choose from {sorted(MODELS)}")
    return MODELS[cfg.kind][0](cfg)
