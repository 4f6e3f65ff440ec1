"""Generator and discriminator networks, picked by name from a typed registry.

The seed GAN (a TensorFlow 1 MNIST blog post) is kept faithfully as ``mlp``: noise 100-d
standard normal, G 100→128→128→pixels with leaky ReLU and a sigmoid output, D pixels→128→128→1
logit with leaky ReLU. It is generalised to any image shape and gains an optional label
embedding fed to both networks (``num_classes > 0``), so that synthetic data comes labelled.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from gan.config import ModelConfig
from gan.dcgan import DCDiscriminator, DCGenerator, Modulation


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

MODELS: dict[str, ModelPair] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (DCGenerator, DCDiscriminator),
}


def xavier_bound(weight: torch.Tensor) -> float:
    """Glorot's uniform bound sqrt(6 / (fan_in + fan_out)) for a Linear or (transposed)
    convolution weight: dims 0 and 1 are the channels, the rest the receptive field."""
    receptive = math.prod(weight.shape[2:])
    return math.sqrt(6.0 / ((weight.shape[0] + weight.shape[1]) * receptive))


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every layer from ``generator`` so that a seed alone fixes the weights.

    Xavier-uniform weights and zero biases (the seed's TF1 defaults), unit-normal embeddings,
    zero latent modulations (``gan.dcgan.Modulation``);
    drawing from an explicit generator keeps the global RNG untouched.
    """
    for m in module.modules():
        if isinstance(m, Modulation):
            with torch.no_grad():
                m.weight.zero_()
                m.bias.zero_()
        elif isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            bound = xavier_bound(m.weight)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
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
