"""Metric math: fidelity to a reference implementation, robustness, invariances."""

import numpy as np
import pytest
from scipy import linalg

from gan.metrics import fid_like, fid_like_subsets, frechet_distance, gaussian_stats


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


# ------------------------------------------------------------------ KID, PRDC, privacy

from gan.features import SmallCNN, extract  # noqa: E402
from gan.metrics import auc, kid, prdc, privacy  # noqa: E402
from gan.metrics.kid import mmd2_unbiased  # noqa: E402


def test_kid_of_a_set_with_itself_is_about_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 32))
    b = rng.normal(size=(600, 32))
    mean, std = kid(a, b, subsets=20, subset_size=300)
    assert abs(mean) < 3 * std + 1e-3
    far, _ = kid(a, b + 1.0, subsets=20, subset_size=300)
    assert far > 10 * max(abs(mean), std)


def test_kid_matches_direct_formula():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 0.3
    k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
    m = 50
    direct = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1))
              + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1)) - 2 * k(x, y).mean())
    assert mmd2_unbiased(x, y) == pytest.approx(direct, rel=1e-12)


@pytest.mark.slow
def test_prdc_reference_sanity_values():
    """clovaai/generative-evaluation-prdc's README: two independent N(0, I) samples of 10,000
    points in 1,000 dimensions, k=5 → precision 0.4772, recall 0.4705, density 1.0555, coverage
    0.9735 (one draw). Over 6 seeds here the draw-to-draw spread (std) was precision 0.011,
    recall 0.0125, density 0.063, coverage 0.006, means 0.480 / 0.480 / 1.003 / 0.967: the
    reference values sit within one std. A draw must agree within 3 std."""
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(10_000, 1000)), rng.normal(size=(10_000, 1000))
    m = prdc(real, fake, k=5)
    assert m["precision"] == pytest.approx(0.4772, abs=3 * 0.011)
    assert m["recall"] == pytest.approx(0.4705, abs=3 * 0.0125)
    assert m["density"] == pytest.approx(1.0555, abs=3 * 0.063)
    assert m["coverage"] == pytest.approx(0.9735, abs=3 * 0.006)


def test_prdc_small_cases():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 5))
    same = prdc(real, real.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc(real, real + 100.0, k=3)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0
    collapsed = prdc(real, np.repeat(real[:1], 300, axis=0) + rng.normal(scale=1e-6, size=(300, 5)), k=3)
    assert collapsed["coverage"] < 0.05 and collapsed["recall"] < 0.05


def test_auc():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0, 2.0]), np.array([1.0])) == 0.5


def test_privacy_tells_copies_from_fresh_samples():
    rng = np.random.default_rng(3)
    population = rng.random((3000, 16))
    train, holdout, fresh = population[:1000], population[1000:1500], population[1500:]
    honest, dist = privacy(train, holdout, fresh)
    assert abs(honest["dcr_share"] - 0.5) < 0.05 and honest["near_copy_share"] < 0.03
    assert abs(honest["mia_auc"] - 0.5) < 0.05 and len(dist["holdout_to_train"]) == 500
    copies = train[rng.integers(0, 1000, 1500)] + rng.normal(scale=1e-3, size=(1500, 16))
    leaky, _ = privacy(train, holdout, copies)
    assert leaky["near_copy_share"] > 0.9 and leaky["mia_auc"] > 0.7 and leaky["dcr_share"] > 0.55


def test_features_do_not_depend_on_batch_size():
    import torch

    torch.manual_seed(0)
    model = SmallCNN(1, 10).eval()
    images = np.random.default_rng(4).integers(0, 256, (70, 1, 12, 12), dtype=np.uint8)
    a, b = extract(model, images, batch_size=1), extract(model, images, batch_size=64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    m1 = kid(a, a[::-1].copy(), subsets=5, subset_size=50)
    m2 = kid(b, b[::-1].copy(), subsets=5, subset_size=50)
    assert m1[0] == pytest.approx(m2[0], rel=1e-4, abs=1e-9)


def test_fid_ratio_means_the_same_at_any_dataset_size():
    """One real source subsampled at two sizes (60,000 and 12,000 images, a fifth held out):
    the raw floor at the holdout's own count moves by about 4x, while fid_like over its floor,
    both at 2,000 a side and averaged over subsets, stays within its reported spread."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (10, 32))
    draw = lambda n, shift=0.0, scale=1.0: centres[rng.integers(0, 10, n)] + shift + scale * rng.normal(0, 1, (n, 32))
    real, fake = draw(60_000), draw(10_000, 0.15, 1.1)
    raw_floor, scored = {}, {}
    for n in (60_000, 12_000):
        holdout, train = real[:n // 5], real[n // 5:n]
        raw_floor[n] = fid_like(holdout, train[:len(holdout)])
        scored[n] = fid_like_subsets(holdout, train, fake, count=2_000, subsets=5, seed=0)
    assert raw_floor[12_000] > 3 * raw_floor[60_000]
    a, b = scored[60_000], scored[12_000]
    assert a["fid_like.count"] == b["fid_like.count"] == 2_000
    assert abs(a["fid_like_ratio"] - b["fid_like_ratio"]) <= max(a["fid_like_ratio.std"], b["fid_like_ratio.std"])
    assert a["fid_like_ratio"] > 1.5 and b["fid_like_ratio"] > 1.5  # the shifted set is told apart at both sizes


def test_tstr_is_the_mean_of_classifiers_from_successive_seeds():
    """``tstr_accuracy`` averages ``tstr_repeats`` classifiers trained on the same generated
    images from seeds seed, seed+1, ...; ``.std`` is their spread; one repeat is the single
    classifier of the extractor's seed."""
    from dataclasses import replace

    from gan.evaluate import EvalConfig, score
    from gan.features import ClassifierConfig, accuracy, train_classifier
    from gan.models import ModelConfig, build

    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    images = (rng.integers(0, 60, (90, 1, 8, 8)) + 60 * labels[:, None, None, None]).astype(np.uint8)
    data = {"images": images, "labels": labels, "train": np.arange(60), "holdout": np.arange(60, 90)}
    G, _ = build(ModelConfig(kind="mlp", height=8, width=8, num_classes=3, hidden=16), seed=0)
    cfg = EvalConfig(ClassifierConfig(steps=15, batch_size=16, seed=4), num_samples=60, fid_count=20, fid_subsets=2,
                     tstr_repeats=3)
    extractor = train_classifier(images[:60], labels[:60], 3, cfg.classifier)
    ev = score(G, data, extractor, cfg)
    each = [accuracy(train_classifier(ev.images, ev.labels, 3, replace(cfg.classifier, seed=s)), images[60:], labels[60:])
            for s in (4, 5, 6)]
    assert ev.metrics["tstr_accuracy"] == pytest.approx(np.mean(each))
    assert ev.metrics["tstr_accuracy.std"] == pytest.approx(np.std(each, ddof=1))
    one = score(G, data, extractor, replace(cfg, tstr_repeats=1)).metrics
    assert one["tstr_accuracy"] == pytest.approx(each[0]) and one["tstr_accuracy.std"] == 0
    with pytest.raises(ValueError, match="tstr_repeats must be at least 1, got 0"):
        score(G, data, extractor, replace(cfg, tstr_repeats=0))
