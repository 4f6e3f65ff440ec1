"""Metric math: fidelity to a reference implementation, robustness, invariances."""

import numpy as np
import pytest
from scipy import linalg

from gan.metrics import fid_like, frechet_distance, gaussian_stats


def reference_fid(a, b):
    """The textbook formula (as in pytorch-fid), for well-conditioned inputs."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_matches_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    b = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0
    assert fid_like(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)


def test_self_distance_is_zero():
    a = np.random.default_rng(1).normal(size=(500, 16))
    assert fid_like(a, a) == pytest.approx(0.0, abs=1e-6)


def test_mean_shift_only():
    a = np.random.default_rng(2).normal(size=(400, 4))
    assert fid_like(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)


def test_rank_deficient_sets_stay_finite():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 128)), rng.normal(size=(20, 128))  # n < d: singular covariances
    d = fid_like(a, b)
    assert np.isfinite(d) and d > 0
    assert isinstance(frechet_distance(gaussian_stats(a), gaussian_stats(a)), float)


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
