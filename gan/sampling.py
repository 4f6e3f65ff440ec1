"""Deterministic sampling: image i of ``sample(G, n, seed)`` depends only on ``seed + i``.

Each image draws its noise from its own ``torch.Generator`` seeded with its seed, and the
network runs on fixed-size chunks (the tail padded), so that the batch a caller asks for never
changes an image: one row at a time or a million at once give the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CHUNK = 64  # rows per forward pass; fixed so that matmul shapes never depend on n


def noise_for_seeds(seeds: np.ndarray, z_dim: int) -> torch.Tensor:
    """(n,) integer seeds → (n, z_dim) standard-normal noise, row i from seed i alone."""
    out = torch.empty(len(seeds), z_dim)
    for i, s in enumerate(np.asarray(seeds, dtype=np.int64)):
        out[i] = torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s)))
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
    return sample_noise(G, noise_for_seeds(seeds, cfg.z_dim), labels, device)


@torch.inference_mode()
def sample_noise(G: nn.Module, z: torch.Tensor, labels: np.ndarray | None = None,
                 device: torch.device | str | None = None) -> np.ndarray:
    """Generate one image per noise row (n, z_dim), on fixed-size chunks (the tail padded), so
    that a row gives the same pixels whatever else is asked with it; uint8 (n, C, H, W).
    ``sample_seeds`` is this on each seed's own noise."""
    cfg = G.cfg
    if device is None:
        weight = next(iter([*G.parameters(), *G.buffers()]), None)
        device = weight.device if weight is not None else torch.device("cpu")
    was_training = G.training
    G.eval()
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()) if labels is not None else None
    out = np.empty((len(z), cfg.channels, cfg.height, cfg.width), dtype=np.uint8)
    for start in range(0, len(z), CHUNK):
        stop = min(start + CHUNK, len(z))
        zc = torch.zeros(CHUNK, cfg.z_dim)
        zc[: stop - start] = z[start:stop]
        yc = None
        if y is not None:
            yc = torch.zeros(CHUNK, dtype=torch.long)
            yc[: stop - start] = y[start:stop]
            yc = yc.to(device)
        x = G(zc.to(device), yc)[: stop - start]
        out[start:stop] = to_uint8(x)
    G.train(was_training)
    return out


def sample(G: nn.Module, n: int, seed: int, labels: np.ndarray | None = None,
           device: torch.device | str | None = None) -> np.ndarray:
    """Generate n images; image i uses seed ``seed + i`` (and ``labels[i]``). uint8 (n, C, H, W)."""
    return sample_seeds(G, seed + np.arange(n, dtype=np.int64), labels, device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] → uint8 in [0, 255] (round to nearest)."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


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
