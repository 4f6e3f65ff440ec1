"""Score a generator against a snapshot's real split: FID-like, its floor, TSTR beside TRTR.

All scores of one dataset use one extractor (a ``SmallCNN`` trained once on the real train
split); its weight hash goes with every score so that scores from different extractors are never
compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from gan.features import ClassifierConfig, SmallCNN, accuracy, extract, train_classifier
from gan.metrics import fid_like
from gan.sampling import sample

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation samples use seeds no publication defaults to


@dataclass(frozen=True)
class EvalConfig:
    classifier: ClassifierConfig = ClassifierConfig()  # extractor, TSTR and TRTR budget
    seed: int = 0                                      # seeds of the generated samples

    def to_dict(self) -> dict:
        return asdict(self)


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


def score(G: nn.Module, data: dict[str, np.ndarray], extractor: SmallCNN, cfg: EvalConfig) -> dict[str, float]:
    """Metrics of generator ``G`` on a loaded snapshot.

    - ``fid_like``: Fréchet distance between extractor features of the real holdout and of as
      many generated images (same class mix when conditional).
    - ``fid_like_floor``: the same distance between an equally large subsample of the real
      train split and the real holdout: the score of a perfect generator, up to sampling noise.
    - ``tstr_accuracy`` (conditional only): the extractor's architecture and budget trained on
      as many synthetic images as the train split has, same label mix, tested on the holdout.
    """
    xt, yt, xh, yh = real_split(data)
    conditional = G.cfg.conditional
    seed = EVAL_SEED_OFFSET + cfg.seed
    fake_h = sample(G, len(xh), seed, yh if conditional else None)
    real_f = extract(extractor, xh)
    pick = np.random.default_rng(cfg.seed).choice(len(xt), size=min(len(xh), len(xt)), replace=False)
    out = {
        "fid_like": fid_like(real_f, extract(extractor, fake_h)),
        "fid_like_floor": fid_like(real_f, extract(extractor, xt[pick])),
    }
    if conditional:
        fake_t = sample(G, len(xt), seed + len(xh), yt)
        clf = train_classifier(fake_t, yt, G.cfg.num_classes, cfg.classifier)
        out["tstr_accuracy"] = accuracy(clf, xh, yh)
    return out
