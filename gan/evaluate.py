"""Score a generator against a snapshot's real split with one pinned feature extractor.

Fidelity (FID-like and its real-vs-real floor, KID, precision/recall/density/coverage, per-class
coverage and FID-like), utility (TSTR beside TRTR) and privacy (DCR share, near copies,
membership inference). The extractor's weight hash goes with every score so that scores from
different extractors are never compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
from torch import nn

from gan.features import ClassifierConfig, SmallCNN, accuracy, extract, train_classifier
from gan.metrics import EvalSets, compute, fid_like, privacy
from gan.metrics.frechet import spread
from gan.sampling import sample

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation samples use seeds no publication defaults to


@dataclass(frozen=True)
class EvalConfig:
    classifier: ClassifierConfig = ClassifierConfig()  # extractor, TSTR and TRTR budget
    num_samples: int = 10_000                          # generated images scored
    k: int = 5                                         # neighbours for PRDC
    seed: int = 0                                      # seeds of samples and subsets
    fid_count: int = 2_000                             # images per side of each FID-like distance
    fid_subsets: int = 5                               # random subsets averaged (the spread is reported)
    tstr_repeats: int = 3                              # TSTR classifiers, seeds seed, seed+1, ...: mean and spread

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    images: np.ndarray                   # the generated images, uint8 (n, C, H, W)
    labels: np.ndarray | None            # their labels
    distances: dict[str, np.ndarray] = field(default_factory=dict)  # for the privacy histograms


def real_split(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(train images, train labels, holdout images, holdout labels) of a loaded snapshot."""
    x, y = data["images"], data["labels"]
    tr, ho = data["train"], data["holdout"]
    return x[tr], (y[tr] if y is not None else None), x[ho], (y[ho] if y is not None else None)


def fit_extractor(data: dict[str, np.ndarray], num_classes: int, cfg: EvalConfig) -> tuple[SmallCNN, float | None]:
    """Train the extractor on the real train split; returns it and its holdout accuracy (TRTR)
    when the snapshot is labelled, else (extractor, None)."""
    xt, yt, xh, yh = real_split(data)
    model = train_classifier(xt, yt, num_classes, cfg.classifier)
    trtr = accuracy(model, xh, yh) if yt is not None else None
    return model, trtr


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, C, H, W) → uint8 rows (n, C·H·W), a view where it can be: the privacy
    metrics' space, which ``gan.metrics.distances`` scales to [0, 1] block by block."""
    return images.reshape(len(images), -1)


def score(G: nn.Module, data: dict[str, np.ndarray], extractor: SmallCNN, cfg: EvalConfig) -> Evaluation:
    """Every metric of generator ``G`` on a loaded snapshot (see ``gan.metrics``).

    ``cfg.num_samples`` images are generated, their class mix that of the real holdout when
    ``G`` is conditional; ``tstr_accuracy`` trains the extractor's architecture and budget on
    them and tests on the real holdout, ``cfg.tstr_repeats`` times from successive classifier
    seeds (the first is the extractor's): their mean, with their spread as ``tstr_accuracy.std``.
    One classifier's accuracy moves with its seed alone: a spread of 0.007 over 5 seeds, up to
    0.018 between two, on colour MNIST at 32 px.
    """
    if cfg.tstr_repeats < 1:
        raise ValueError(f"EvalConfig.tstr_repeats must be at least 1, got {cfg.tstr_repeats}")
    xt, yt, xh, yh = real_split(data)
    rng = np.random.default_rng(cfg.seed)
    labels = np.resize(rng.permutation(yh), cfg.num_samples) if G.cfg.conditional else None
    fake = sample(G, cfg.num_samples, EVAL_SEED_OFFSET + cfg.seed, labels)
    floor_pick = rng.choice(len(xt), size=min(cfg.fid_count * cfg.fid_subsets, len(xt)), replace=False)
    sets = EvalSets(
        holdout_features=extract(extractor, xh), floor_features=extract(extractor, xt[floor_pick]),
        fake_features=extract(extractor, fake), holdout_labels=yh, fake_labels=labels,
        train_pixels=pixels(xt), holdout_pixels=pixels(xh), fake_pixels=pixels(fake),
        k=cfg.k, seed=cfg.seed, fid_count=cfg.fid_count, fid_subsets=cfg.fid_subsets)
    metrics = compute(sets, ["frechet", "kid", "prdc", "per_class"])
    private, distances = privacy(sets.train_pixels, sets.holdout_pixels, sets.fake_pixels, cfg.seed)
    metrics.update(private)
    if labels is not None:
        tstr = [accuracy(train_classifier(fake, labels, G.cfg.num_classes,
                                          replace(cfg.classifier, seed=cfg.classifier.seed + r)), xh, yh)
                for r in range(cfg.tstr_repeats)]
        metrics["tstr_accuracy"] = float(np.mean(tstr))
        metrics["tstr_accuracy.std"] = spread(tstr)
    return Evaluation(metrics, fake, labels, distances)


def make_probe(extractor: SmallCNN, reference: np.ndarray, reference_labels: np.ndarray | None,
               n: int = 1000, seed: int = 0):
    """A cheap quality probe for training: FID-like of n fixed-seed samples against n real
    *train* images (never the holdout, which the final scores use). Lower is better."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(reference), size=min(n, len(reference)), replace=False)
    real_stats = extract(extractor, reference[pick])
    labels = reference_labels[pick] if reference_labels is not None else None

    def probe(G: nn.Module) -> float:
        fake = sample(G, len(pick), EVAL_SEED_OFFSET // 2 + seed, labels if G.cfg.conditional else None)
        return fid_like(real_stats, extract(extractor, fake))

    return probe
