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
