"""A conditional convolutional GAN sized for CPU budgets (``--model dcgan``).

Widths and depth are chosen for quality per CPU-minute: at 28x28 the generator costs about
3.5 M multiply-adds per image and the discriminator about 1.7 M, roughly 1/40 of the common
reference DCGAN. Conditioning: a label embedding concatenated to the noise in G, and a
projection discriminator (Miyato & Koyama 2018) in D: logit = ψ(φ(x)) + ⟨embed(y), φ(x)⟩.
Any image size works: G upsamples from ⌈H/4⌉x⌈W/4⌉ and crops.
"""

from __future__ import annotations

import torch
from torch import nn

from gan.config import ModelConfig


def _base(cfg: ModelConfig) -> tuple[int, int]:
    return -(-cfg.height // 4), -(-cfg.width // 4)   # ceil: two stride-2 stages reach H, W


class DCGenerator(nn.Module):
    """z (B, z_dim) [+ labels (B,)] → images (B, C, H, W) in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.hidden                                  # channels at the base resolution
        h0, w0 = _base(cfg)
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        extra = cfg.embed_dim if cfg.conditional else 0
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim + extra, w * h0 * w0),
                                nn.BatchNorm1d(w * h0 * w0), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1),       # (B, w/2, 2h0, 2w0)
            nn.BatchNorm2d(w // 2), nn.ReLU(),
            nn.ConvTranspose2d(w // 2, w // 4, 4, stride=2, padding=1),  # (B, w/4, 4h0, 4w0)
            nn.BatchNorm2d(w // 4), nn.ReLU(),
            nn.Conv2d(w // 4, cfg.channels, 3, padding=1),
            nn.Sigmoid(),
        )
        self.shape0 = (w, h0, w0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = z if self.embed is None else torch.cat([z, self.embed(labels)], dim=1)
        x = self.net(self.fc(h).view(-1, *self.shape0))
        return x[:, :, : self.cfg.height, : self.cfg.width]


class DCDiscriminator(nn.Module):
    """images (B, C, H, W) [+ labels (B,)] → logits (B,); projection conditioning."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.hidden
        h0, w0 = _base(cfg)
        self.pad = (0, 4 * w0 - cfg.width, 0, 4 * h0 - cfg.height)
        self.features = nn.Sequential(
            nn.Conv2d(cfg.channels, w // 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, w/2, 2h0, 2w0)
            nn.Conv2d(w // 2, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),             # (B, w, h0, w0)
            nn.Flatten(),
        )
        width = w * h0 * w0
        self.out = nn.Linear(width, 1)
        self.embed = nn.Embedding(cfg.num_classes, width) if cfg.conditional else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(nn.functional.pad(x, self.pad))
        logit = self.out(f).squeeze(1)
        if self.embed is not None:
            logit = logit + (self.embed(labels) * f).sum(1)
        return logit
