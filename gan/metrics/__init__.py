"""Metric math, pure and float64, one file per family: features → statistics → metric.

``FAMILIES`` is the registry: each family takes the evaluation sets and returns named scores
(the MLflow and manifest keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gan.metrics.frechet import (
    GaussianStats,
    fid_like,
    fid_like_subsets,
    frechet_distance,
    gaussian_stats,
)
from gan.metrics.kid import kid
from gan.metrics.prdc import prdc
from gan.metrics.privacy import auc, privacy


@dataclass(frozen=True)
class EvalSets:
    """Everything a metric family may need; rows aligned with their labels."""
    holdout_features: np.ndarray        # (n_h, d) real holdout
    floor_features: np.ndarray          # (n_t', d) real train subsample, for the floor
    fake_features: np.ndarray           # (n_g, d) generated
    holdout_labels: np.ndarray | None   # (n_h,)
    fake_labels: np.ndarray | None      # (n_g,)
    train_pixels: np.ndarray            # (n_t, C*H*W): uint8 pixels, or floats in [0, 1]
    holdout_pixels: np.ndarray          # (n_h, C*H*W)
    fake_pixels: np.ndarray             # (n_g, C*H*W)
    k: int = 5                          # neighbours for PRDC
    seed: int = 0
    fid_count: int = 2_000              # rows per side of every FID-like distance
    fid_subsets: int = 5                # subsets averaged


def _frechet(s: EvalSets) -> dict[str, float]:
    return fid_like_subsets(s.holdout_features, s.floor_features, s.fake_features, s.fid_count, s.fid_subsets, s.seed)


def _kid(s: EvalSets) -> dict[str, float]:
    mean, std = kid(s.holdout_features, s.fake_features, seed=s.seed)
    return {"kid": mean, "kid.std": std}


def _prdc(s: EvalSets) -> dict[str, float]:
    return prdc(s.holdout_features, s.fake_features, s.k)


def _privacy(s: EvalSets) -> dict[str, float]:
    return privacy(s.train_pixels, s.holdout_pixels, s.fake_pixels, s.seed)[0]


def _per_class(s: EvalSets) -> dict[str, float]:
    """Per-class coverage and FID-like (conditional models): a dropped mode shows here."""
    if s.holdout_labels is None or s.fake_labels is None:
        return {}
    out = {}
    for c in np.unique(s.holdout_labels):
        real = s.holdout_features[s.holdout_labels == c]
        fake = s.fake_features[s.fake_labels == c]
        if len(real) > s.k + 1 and len(fake) > s.k + 1:
            out[f"coverage.class_{c}"] = prdc(real, fake, s.k)["coverage"]
            n = min(len(real), len(fake))
            out[f"fid_like.class_{c}"] = fid_like(real[:n], fake[:n])
    return out


FAMILIES: dict[str, Callable[[EvalSets], dict[str, float]]] = {
    "frechet": _frechet,
    "kid": _kid,
    "prdc": _prdc,
    "privacy": _privacy,
    "per_class": _per_class,
}


def compute(sets: EvalSets, families: list[str] | None = None) -> dict[str, float]:
    """Run the named families (all by default) and merge their scores."""
    families = list(FAMILIES) if families is None else families
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown metric family {unknown[0]!r}; choose from {sorted(FAMILIES)}")
    out: dict[str, float] = {}
    for name in families:
        out.update(FAMILIES[name](sets))
    return out


__all__ = ["EvalSets", "FAMILIES", "GaussianStats", "auc", "compute", "fid_like", "fid_like_subsets",
           "frechet_distance", "gaussian_stats", "kid", "prdc", "privacy"]
