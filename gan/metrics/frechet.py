"""Fréchet distance between Gaussian fits of two feature sets (the FID-like family)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianStats:
    mu: np.ndarray      # (d,)
    sigma: np.ndarray   # (d, d), symmetric positive semi-definite
    n: int              # samples the fit came from


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Mean and (unbiased) covariance of (n, d) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature rows of shape (n, d), got {f.shape}")
    return GaussianStats(f.mean(0), np.cov(f, rowvar=False), len(f))


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; tiny negative eigenvalues from rounding → 0."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance ‖μa−μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½) between two Gaussians.

    Robust where the textbook ``sqrtm(Σa Σb)`` is not: ``Σa^½ Σb Σa^½`` is symmetric PSD, so
    its square root comes from an eigen-decomposition with real, clipped eigenvalues: no complex
    parts, no NaN when a covariance is rank-deficient (fewer samples than feature dimensions).
    """
    diff = a.mu - b.mu
    sa = _psd_sqrt(a.sigma)
    cross = np.linalg.eigvalsh(sa @ b.sigma @ sa)
    tr_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    d = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_sqrt)
    return max(d, 0.0)


def fid_like(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets."""
    return frechet_distance(gaussian_stats(real_features), gaussian_stats(fake_features))


def spread(values) -> float:
    """The ``.std`` of a metric measured several times: the sample standard deviation, 0 for one."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def fid_like_subsets(reference: np.ndarray, floor: np.ndarray, fake: np.ndarray, count: int = 2_000,
                     subsets: int = 5, seed: int = 0) -> dict[str, float]:
    """FID-like of ``fake`` and its floor (``floor``: other real images) against ``reference``,
    at the same ``count`` rows per side whatever the dataset size, averaged over ``subsets``
    random subsets. The Fréchet distance of finite samples is biased upwards by about
    tr(Σ)/n, so a score and its floor compare, and compare across datasets, only at one n.
    Returns the means, their spreads (``.std``), their ratio and the count used."""
    n = min(count, len(reference), len(floor), len(fake))
    rng = np.random.default_rng(seed)
    fids, floors = [], []
    for _ in range(subsets):
        ref = reference[rng.choice(len(reference), n, replace=False)]
        fids.append(fid_like(ref, fake[rng.choice(len(fake), n, replace=False)]))
        floors.append(fid_like(ref, floor[rng.choice(len(floor), n, replace=False)]))
    fids_, floors_ = np.asarray(fids), np.asarray(floors)
    ratios = fids_ / np.maximum(floors_, 1e-12)
    return {"fid_like": float(fids_.mean()), "fid_like.std": spread(fids_),
            "fid_like_floor": float(floors_.mean()), "fid_like_floor.std": spread(floors_),
            "fid_like_ratio": float(ratios.mean()), "fid_like_ratio.std": spread(ratios), "fid_like.count": float(n)}
