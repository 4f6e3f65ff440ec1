"""Privacy against the real train split, with the real holdout as the reference.

Distances are Euclidean in pixel space (images flattened, scaled to [0, 1]), where a copied or
slightly perturbed training image is closest to its source.

- ``dcr_share``: share of synthetic samples closer to a train record than to any holdout record,
  the train side subsampled to the holdout's size so that 0.5 is ideal (ties count half).
- ``near_copy_share``: share of synthetic samples closer to a train record than the 1st
  percentile of holdout→train nearest distances (real unseen data is that close only 1% of
  the time).
- ``mia_auc``: AUC of a distance-based membership-inference attack that scores each real record
  by its closeness to the synthetic set and tries to tell train records (members) from holdout
  records, on equal-size samples of each: 0.5 is ideal, 1.0 means every member is exposed.
"""

from __future__ import annotations

import numpy as np

from gan.metrics.distances import nearest, nearest_both


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score(positive) > score(negative)) + ½·P(equal): the Mann-Whitney AUC."""
    neg = np.sort(np.asarray(negative, np.float64))
    pos = np.asarray(positive, np.float64)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def privacy(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray, seed: int = 0
            ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Privacy metrics of (n, d) rows (uint8 pixels, or floats); also returns the distance arrays for plots
    (``synthetic_to_train``, ``holdout_to_train``)."""
    rng = np.random.default_rng(seed)
    m = min(len(train), len(holdout))
    tr = train[rng.choice(len(train), m, replace=False)]
    ho = holdout[rng.choice(len(holdout), m, replace=False)]

    (d_tr, tr_to_synthetic), (d_ho, ho_to_synthetic) = nearest_both(synthetic, tr), nearest_both(synthetic, ho)
    dcr_share = float((d_tr < d_ho).mean() + 0.5 * (d_tr == d_ho).mean())

    holdout_to_train = nearest(holdout, train)
    synthetic_to_train = nearest(synthetic, train)
    threshold = np.percentile(holdout_to_train, 1)
    near_copy_share = float((synthetic_to_train < threshold).mean())

    mia_auc = auc(-tr_to_synthetic, -ho_to_synthetic)  # closer → "member"
    metrics = {"dcr_share": dcr_share, "near_copy_share": near_copy_share, "mia_auc": mia_auc}
    return metrics, {"synthetic_to_train": synthetic_to_train, "holdout_to_train": holdout_to_train}
