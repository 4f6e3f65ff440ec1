"""What a generator learned, as data for the owner's explanation panels: the nearest real
records of its samples, paths through its latent space, and what its label changes. Pure
numpy and torch; ``tasks/explain.py`` turns these into pictures and a page."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gan.metrics.distances import k_nearest
from gan.sampling import noise_for_seeds, sample_noise


@dataclass
class Neighbours:
    """Each sample's k nearest real train records, in pixel space and in feature space."""
    sample_index: np.ndarray   # (m,) rows of the scored samples shown, worst cases first
    pixel_index: np.ndarray    # (m, k) train rows, nearest first
    pixel_distance: np.ndarray  # (m, k) pixel L2 (images in [0, 1])
    feature_index: np.ndarray  # (m, k)
    feature_distance: np.ndarray  # (m, k) extractor-feature L2
    typical: float             # median holdout→train nearest pixel distance: the scale
    near_copy: float           # the near-copy threshold (1st percentile of the same)


def neighbours(fake_pixels: np.ndarray, train_pixels: np.ndarray, fake_features: np.ndarray,
               train_features: np.ndarray, holdout_to_train: np.ndarray, worst: int = 6, fixed: int = 6,
               k: int = 3) -> Neighbours:
    """The ``worst`` samples nearest to any train record (the privacy metrics' worst cases),
    then the first ``fixed`` samples, beside their ``k`` nearest train records."""
    nearest = k_nearest(fake_pixels, train_pixels, 1)[1][:, 0]
    order = np.argsort(nearest, kind="stable")[:worst]
    shown = set(order.tolist())
    rest = [i for i in range(len(fake_pixels)) if i not in shown][:fixed]
    rows = np.concatenate([order, np.asarray(rest, dtype=np.int64)])
    pi, pd_ = k_nearest(fake_pixels[rows], train_pixels, k)
    fi, fd = k_nearest(fake_features[rows], train_features, k)
    return Neighbours(rows, pi, pd_, fi, fd, float(np.median(holdout_to_train)),
                      float(np.percentile(holdout_to_train, 1)))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of two noise vectors at fractions ``t``; t=0 and t=1 give a and
    b exactly."""
    omega = torch.acos((a / a.norm() * b / b.norm()).sum().clamp(-1, 1))
    so = torch.sin(omega)
    if float(so) < 1e-6:  # (anti)parallel: a straight line
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


def interpolations(G: nn.Module, pairs: list[tuple[int, int]], steps: int = 8,
                   labels: list[int] | None = None) -> np.ndarray:
    """A row per seed pair: ``steps`` images along the path between the two seeds' noise (the
    same label along a row for conditional models); uint8 (len(pairs), steps, C, H, W). The
    ends are ``sample_seeds`` at those seeds, pixel for pixel."""
    t = torch.linspace(0, 1, steps)
    rows = []
    for i, (a, b) in enumerate(pairs):
        z = noise_for_seeds(np.array([a, b]), G.cfg.z_dim, G.cfg.noise)
        path = slerp(z[0], z[1], t)
        path[0], path[-1] = z[0], z[1]
        y = np.full(steps, labels[i], dtype=np.int64) if labels is not None else None
        rows.append(sample_noise(G, path, y))
    return np.stack(rows)


def label_sweep(G: nn.Module, seeds: list[int]) -> np.ndarray:
    """Conditional models: each seed's noise under every label; uint8 (len(seeds), K, C, H, W).
    Along a row the label changes and the noise stays."""
    k = G.cfg.num_classes
    z = noise_for_seeds(np.repeat(np.asarray(seeds, dtype=np.int64), k), G.cfg.z_dim, G.cfg.noise)
    images = sample_noise(G, z, np.tile(np.arange(k, dtype=np.int64), len(seeds)))
    return images.reshape(len(seeds), k, *images.shape[1:])
