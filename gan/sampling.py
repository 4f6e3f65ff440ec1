"""Deterministic sampling: image i of ``sample(G, n, seed)`` depends only on ``seed + i``.

Each image's noise comes from its seed alone, by the generator's noise scheme
(``ModelConfig.noise``), and the network runs on fixed-size chunks (the tail padded), so that
the batch a caller asks for never changes an image: one row at a time or a million at once give
the same pixels. Schemes:

- ``splitmix64-quantile16`` (generators trained now): row i holds the first ⌈z_dim/4⌉ outputs
  of the SplitMix64 generator below, seeded with seed i, each cut into four 16-bit numbers (least
  significant first); number k picks the normal quantile Φ⁻¹((k + ½) / 2¹⁶), the middle of the
  k-th of 65,536 equally likely cells. Integer steps and a table lookup only: exact on every
  device, no float64, a quarter of the generator's outputs per row, ~3x cheaper than Box-Muller.
- ``splitmix64`` (generators trained between the two): row i holds the first
  ⌈z_dim/2⌉ outputs of a SplitMix64 generator seeded with seed i (Steele, Lea & Flood 2014, the
  seeding generator of Java's SplittableRandom and of xoshiro), each split into two 32-bit
  uniforms and turned into two normals by Box-Muller. It is counter-based (output j is a hash of
  seed + (j+1)·γ), so a whole block of rows is one vectorised computation on the generator's
  device. Integer steps are exact everywhere; Box-Muller runs in float64 and is rounded to float32.
- ``torch-generator`` (generators registered before it): one ``torch.Generator`` per image,
  seeded with its seed, drawing ``torch.randn(z_dim)``. Kept so that their virtual datasets
  still pull bit-exact.
"""

from __future__ import annotations

import functools
import math
import statistics
import sys

import numpy as np
import torch
from torch import nn

# rows per forward pass; fixed per scheme and model so that matmul shapes never depend on n. The
# older scheme keeps the chunk its datasets were published with; the MLP's matmuls want more rows
# (512: 1.3x the images/s of 256), the DCGAN's convolutions fewer (512 is slower than 64: cache)
CHUNK = {("splitmix64-quantile16", "mlp"): 512, ("splitmix64-quantile16", "dcgan"): 64,
         ("splitmix64", "mlp"): 512, ("splitmix64", "dcgan"): 64}
OLD_CHUNK = 64
NOISE_BLOCK = 4096  # seeds whose noise is computed in one vectorised pass

GAMMA = -0x61C8864680B583EB        # 0x9E3779B97F4A7C15 as a signed 64-bit integer
MIX1 = -0x40A7B892E31B1A47         # 0xBF58476D1CE4E5B9
MIX2 = -0x6B2FB644ECCEEE15         # 0x94D049BB133111EB


def chunk_rows(cfg) -> int:
    """Rows per forward pass of a generator of ``cfg`` (``ModelConfig``)."""
    return CHUNK.get((cfg.noise, cfg.kind), OLD_CHUNK)


def _shr(x: torch.Tensor, bits: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Logical right shift of int64 values read as unsigned (into ``out`` if given)."""
    out = torch.bitwise_right_shift(x, bits, out=out) if out is not None else x >> bits
    return out.bitwise_and_((1 << (64 - bits)) - 1)


def splitmix64(seeds: torch.Tensor, count: int) -> torch.Tensor:
    """(n,) int64 seeds → (n, count) int64: the first ``count`` outputs of SplitMix64 seeded
    with each seed (as unsigned 64-bit words; int64 arithmetic wraps like uint64). In place
    after the first sum: one temporary, so a block stays in cache."""
    z = seeds.reshape(-1, 1) + torch.arange(1, count + 1, dtype=torch.int64, device=seeds.device).mul_(GAMMA)
    t = torch.empty_like(z)
    for shift, mult in ((30, MIX1), (27, MIX2)):
        z.bitwise_xor_(_shr(z, shift, t)).mul_(mult)
    return z.bitwise_xor_(_shr(z, 31, t))


def splitmix64_noise(seeds: torch.Tensor, z_dim: int) -> torch.Tensor:
    """(n,) int64 seeds → (n, z_dim) float32 standard normals, row i from seed i alone."""
    words = splitmix64(seeds, (z_dim + 1) // 2)
    # each word's high and low 32 bits, read as unsigned in place (one strided cast each, not a
    # shift and a mask): a little-endian machine stores the low half first
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    halves = words.view(torch.uint32)
    scale = 2.0 ** -32  # 32-bit integers + 1/2 → uniforms in (0, 1): never 0, the log is finite
    radius = halves[:, high::2].double().add_(0.5).mul_(scale).log_().mul_(-2.0).sqrt_()
    angle = halves[:, low::2].double().add_(0.5).mul_(2.0 * math.pi * scale)
    out = torch.empty(len(words), 2 * words.shape[1], device=words.device)  # float32: cast on write
    out[:, 0::2] = torch.cos(angle).mul_(radius)
    out[:, 1::2] = angle.sin_().mul_(radius)
    return out[:, :z_dim]


@functools.cache
def normal_quantiles(bits: int = 16) -> torch.Tensor:
    """(2**bits,) float32: Φ⁻¹((k + ½) / 2**bits), the standard normal's median of each of its
    2**bits equally likely cells, computed in float64 by the standard library (Wichura's AS241:
    arithmetic, sqrt and the C library's log) and rounded to float32. A test pins the table's
    digest, so a platform whose log gives another table fails it instead of sampling other pixels."""
    inv, cells = statistics.NormalDist().inv_cdf, 1 << bits
    return torch.tensor([inv((k + 0.5) / cells) for k in range(cells)], dtype=torch.float64).float()


def quantile_noise(seeds: torch.Tensor, z_dim: int) -> torch.Tensor:
    """(n,) int64 seeds → (n, z_dim) float32 normals, row i from seed i alone: the four 16-bit
    numbers of each SplitMix64 word, least significant first, each looked up in ``normal_quantiles``."""
    words = splitmix64(seeds, (z_dim + 3) // 4)
    cells = words.view(torch.uint16)  # (n, 4·words): in memory order, low half first on little-endian
    if sys.byteorder == "big":
        cells = cells.view(len(words), -1, 4).flip(2).reshape(len(words), -1)
    index = cells[:, :z_dim].int().reshape(-1)  # index_select takes int32; uint16 does not index
    return normal_quantiles().to(seeds.device).index_select(0, index).view(len(seeds), z_dim)


def torch_generator_noise(seeds: torch.Tensor, z_dim: int) -> torch.Tensor:
    """The older scheme: one ``torch.Generator`` per seed (on the CPU)."""
    out = torch.empty(len(seeds), z_dim)
    for i, s in enumerate(seeds.tolist()):
        out[i] = torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s)))
    return out.to(seeds.device)


NOISE = {"splitmix64-quantile16": quantile_noise, "splitmix64": splitmix64_noise,
         "torch-generator": torch_generator_noise}


def noise_for_seeds(seeds: np.ndarray, z_dim: int, scheme: str = "splitmix64-quantile16",
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) non-negative integer seeds → (n, z_dim) standard-normal noise, row i from seed i
    alone, by ``scheme`` (a key of ``NOISE``), on ``device``. Computed in padded blocks of
    ``NOISE_BLOCK`` rows, so that every row takes the same code path whatever it is asked with."""
    if scheme not in NOISE:
        raise ValueError(f"unknown noise scheme {scheme!r}; choose from {sorted(NOISE)}")
    seeds = torch.from_numpy(np.array(seeds, dtype=np.int64).reshape(-1)).to(device)
    if scheme == "torch-generator":
        return torch_generator_noise(seeds, z_dim)
    out = torch.empty(len(seeds), z_dim, device=device)
    for start in range(0, len(seeds), NOISE_BLOCK):
        block = seeds[start:start + NOISE_BLOCK]
        padded = torch.zeros(NOISE_BLOCK, dtype=torch.int64, device=device)
        padded[:len(block)] = block
        out[start:start + len(block)] = NOISE[scheme](padded, z_dim)[:len(block)]
    return out


@torch.inference_mode()
def sample_seeds(G: nn.Module, seeds: np.ndarray, labels: np.ndarray | None = None,
                 device: torch.device | str | None = None) -> np.ndarray:
    """Generate one image per seed; returns uint8 (n, C, H, W).

    Args:
        G: a generator built from a ``ModelConfig`` (it carries ``G.cfg``).
        seeds: (n,) non-negative integers, one per image.
        labels: (n,) class ids for a conditional generator; must be None otherwise.
        device: where to run the network (default: where its weights are).
    """
    cfg = G.cfg
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if cfg.conditional:
        if labels is None:
            raise ValueError(f"this generator is conditional: give one label in 0..{cfg.num_classes - 1} per seed")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.shape != seeds.shape:
            raise ValueError(f"got {len(labels)} labels for {len(seeds)} seeds")
        if labels.size and (labels.min() < 0 or labels.max() >= cfg.num_classes):
            raise ValueError(f"label out of range: expected 0..{cfg.num_classes - 1}")
    elif labels is not None:
        raise ValueError("this generator is unconditional: labels must not be given")
    if seeds.size and seeds.min() < 0:
        raise ValueError(f"seeds must be non-negative, got {int(seeds.min())}")
    device = _device(G, device)
    out = np.empty((len(seeds), cfg.channels, cfg.height, cfg.width), dtype=np.uint8)
    for start in range(0, len(seeds), NOISE_BLOCK):  # bounded noise memory for any n
        stop = min(start + NOISE_BLOCK, len(seeds))
        sample_noise(G, noise_for_seeds(seeds[start:stop], cfg.z_dim, cfg.noise, device),
                     None if labels is None else labels[start:stop], device, out=out[start:stop])
    return out


def _device(G: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    weight = next(iter([*G.parameters(), *G.buffers()]), None)
    return weight.device if weight is not None else torch.device("cpu")


@torch.inference_mode()
def sample_noise(G: nn.Module, z: torch.Tensor, labels: np.ndarray | None = None,
                 device: torch.device | str | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Generate one image per noise row (n, z_dim), on fixed-size chunks (the tail padded), so
    that a row gives the same pixels whatever else is asked with it; uint8 (n, C, H, W), written
    into ``out`` when given. ``sample_seeds`` is this on each seed's own noise."""
    cfg = G.cfg
    device, chunk = _device(G, device), chunk_rows(cfg)
    was_training = G.training
    G.eval()
    y = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()).to(device)
    if out is None:
        out = np.empty((len(z), cfg.channels, cfg.height, cfg.width), dtype=np.uint8)
    pixels = torch.empty(chunk, cfg.channels, cfg.height, cfg.width, device=device)  # reused: no allocation per chunk
    for start in range(0, len(z), chunk):
        stop = min(start + chunk, len(z))
        zc, yc = z[start:stop].to(device), None if y is None else y[start:stop]
        if stop - start < chunk:  # the tail, padded to the chunk's shape
            zc = torch.cat([zc, zc.new_zeros(chunk - len(zc), cfg.z_dim)])
            yc = None if yc is None else torch.cat([yc, yc.new_zeros(chunk - len(yc))])
        x = torch.mul(G(zc.contiguous(), yc).float(), 255, out=pixels)[: stop - start]
        # to uint8 as ``to_uint8`` does (clamping x·255 to [0, 255] equals clamping x to [0, 1]
        # first: the same pixels, one pass less), then cast into the output (numpy's cast of
        # whole numbers in 0..255: exact, and 2.4x torch's copy_ on this CPU)
        np.copyto(out[start:stop], x.clamp_(0, 255).round_().cpu().numpy(), casting="unsafe")
    G.train(was_training)
    return out


def sample(G: nn.Module, n: int, seed: int, labels: np.ndarray | None = None,
           device: torch.device | str | None = None) -> np.ndarray:
    """Generate n images; image i uses seed ``seed + i`` (and ``labels[i]``). uint8 (n, C, H, W)."""
    return sample_seeds(G, seed + np.arange(n, dtype=np.int64), labels, device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] → uint8 in [0, 255] (round to nearest)."""
    return x.detach().float().clamp(0, 1).mul_(255).round_().to(torch.uint8).cpu().numpy()


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ...: class counts differ by at most one."""
    return np.arange(n, dtype=np.int64) % num_classes


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 (n, C, H, W) → one uint8 (rows, cols, C) picture with a dark border between tiles."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
    ncol = int(np.ceil(n / nrow))
    canvas = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return canvas


def preview(G: nn.Module, n: int = 100, seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """A grid of n fixed-seed samples (class-balanced rows when conditional)."""
    cfg = G.cfg
    if cfg.conditional:
        per_row = max(1, n // cfg.num_classes)
        labels = np.repeat(np.arange(cfg.num_classes), per_row)[:n]
        return grid(sample(G, len(labels), seed, labels, device), nrow=per_row)
    return grid(sample(G, n, seed, None, device))
