"""A conditional convolutional GAN whose depth follows the image (``--model dcgan``).

G starts from a base grid of at most 8x8 and doubles it in each of ``stages``
transposed-convolution stages, at least ``min_stages`` (3): 3 up to 64 px (a 4x4 base at 28
and 32 px, cropped to 28), 4 at 128, 5 at 256 (``stages_for``). Widths halve at each stage and
end at ``hidden / 4`` channels at full resolution, so the base width is ``hidden · 2^(stages-2)``
(capped at 8 · hidden): at 28 and 32 px this is the CPU-sized model (G about 7 M multiply-adds
per image, D about 11.5 M); at 64x64 G costs about 28 M and D 47 M; at 128x128 the base is 256
channels wide, a GPU's model. The third stage at 28–32 px (a 4x4 base, D 128 channels wide
there: three times its parameters) cost 1.39x per image and took colour MNIST 32 px from
TSTR 0.874 to 0.906 and 3.3x to 2.1x the floor in fewer minutes (README); configs stored
before it keep two (``LEGACY``). D mirrors G with stride-2
convolutions, each followed by ``d_convs - 1`` 3x3 ones at the same grid (``d_convs`` 2 by
default: with one, D told colour MNIST's digits apart too weakly). With ``minibatch_std`` D also
sees, beside its last features, their standard deviation over each group of 4 images (Karras
et al. 2018): a batch of fakes that all look alike is told from real ones. With
``latent_modulation`` each G stage's BatchNorm takes its gain and bias per image from (noise,
label) (BigGAN's conditional BatchNorm): on colour MNIST it cut the FID-like ratio of the
default run from 6.0 to 2.6 times the floor. Conditioning: a
label embedding concatenated to the noise in G, and a projection discriminator (Miyato & Koyama
2018) in D: logit = ψ(φ(x)) + ⟨embed(y), φ(x)⟩. Any size and aspect works: G crops its output, D pads its input to the stages' multiple.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan.config import ModelConfig

BASE_MAX = 8  # the largest base grid side
GROUP = 4     # images per minibatch-std group


def stages_for(height: int, width: int, least: int = 3) -> int:
    """Up-sampling stages for an image: the fewest (at least ``least``) whose base side is <= 8."""
    return max(least, math.ceil(math.log2(max(height, width) / BASE_MAX)))


def stages(cfg: ModelConfig) -> int:
    return cfg.stages or stages_for(cfg.height, cfg.width, cfg.min_stages)


def widths(cfg: ModelConfig) -> list[int]:
    """Channels at the base grid and after each up-sampling stage (G); D reads them backwards."""
    n = stages(cfg)
    base = min(cfg.hidden * 2 ** (n - 2), 8 * cfg.hidden)
    return [max(cfg.hidden // 4, base // 2 ** i) for i in range(n + 1)]


def _base(cfg: ModelConfig) -> tuple[int, int]:
    scale = 2 ** stages(cfg)
    return -(-cfg.height // scale), -(-cfg.width // scale)   # ceil: the stages reach H, W


class Modulation(nn.Linear):
    """(noise, label) → a stage's (gain - 1, bias), per channel; ``gan.models.init_weights``
    starts it at zero, so a new generator begins as plain BatchNorm."""


class DCGenerator(nn.Module):
    """z (B, z_dim) [+ labels (B,)] → images (B, C, H, W) in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ws = widths(cfg)
        h0, w0 = _base(cfg)
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        extra = cfg.embed_dim if cfg.conditional else 0
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim + extra, ws[0] * h0 * w0),
                                nn.BatchNorm1d(ws[0] * h0 * w0), nn.ReLU())
        modulated = cfg.latent_modulation
        layers: list[nn.Module] = []
        for a, b in zip(ws, ws[1:]):                   # each stage doubles the grid
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b, affine=not modulated), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(ws[-1], cfg.channels, 3, padding=1), nn.Sigmoid())
        # BigGAN's conditional BatchNorm fed by the latent: a stage's gain and bias are linear in
        # (noise, label), so a global choice (a colour) reaches every resolution
        self.modulation = nn.ModuleList(Modulation(cfg.z_dim + extra, 2 * b) for b in ws[1:]) if modulated else None
        self.shape0 = (ws[0], h0, w0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = z if self.embed is None else torch.cat([z, self.embed(labels)], dim=1)
        x = self.fc(h).view(-1, *self.shape0)
        if self.modulation is None:
            x = self.net(x)
        else:
            layers = iter(self.net)
            for linear in self.modulation:
                up, norm, act = next(layers), next(layers), next(layers)
                gain, bias = linear(h)[:, :, None, None].chunk(2, dim=1)
                x = act(torch.addcmul(bias, norm(up(x)), gain + 1))
            for layer in layers:
                x = layer(x)
        return x[:, :, : self.cfg.height, : self.cfg.width]


class DCDiscriminator(nn.Module):
    """images (B, C, H, W) [+ labels (B,)] → logits (B,); projection conditioning."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ws = widths(cfg)[-2::-1]                        # one per stride-2 stage, widest last
        h0, w0 = _base(cfg)
        scale = 2 ** stages(cfg)
        self.pad = (0, scale * w0 - cfg.width, 0, scale * h0 - cfg.height)
        layers: list[nn.Module] = []
        for a, b in zip([cfg.channels] + ws, ws):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            for _ in range(cfg.d_convs - 1):           # depth at the same grid: shapes under any colours
                layers += [nn.Conv2d(b, b, 3, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)          # (B, ws[-1], h0, w0)
        self.batch_statistics = cfg.minibatch_std        # train: reals and fakes in separate calls
        width = (ws[-1] + cfg.minibatch_std) * h0 * w0
        self.out = nn.Linear(width, 1)
        self.embed = nn.Embedding(cfg.num_classes, width) if cfg.conditional else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(nn.functional.pad(x, self.pad))
        if self.batch_statistics:
            f = torch.cat([f, group_std(f)], 1)
        f = f.flatten(1)
        logit = self.out(f).squeeze(1)
        if self.embed is not None:
            logit = logit + (self.embed(labels) * f).sum(1)
        return logit


def group_std(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, 1, H, W): the standard deviation of each feature over a group of
    gcd(4, B) consecutive images, averaged over the features, given to every image of the group."""
    n = len(f)
    g = math.gcd(GROUP, n)
    v = f.float().view(n // g, g, *f.shape[1:])
    # the variance written out: Tensor.var over this middle axis was 10x slower on the CPU
    # (forward and backward), a quarter of a training step at 32x32
    std = (v - v.mean(1, keepdim=True)).square().mean(1).add(1e-8).sqrt().mean((1, 2, 3))
    return std.to(f.dtype).repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, *f.shape[2:])
