"""Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

k-nearest-neighbour manifolds in feature space: a real sample's ball has the radius of its k-th
nearest real neighbour (likewise for fakes). Follows the reference implementation
(clovaai/generative-evaluation-prdc):
- precision: share of fakes inside at least one real ball;
- recall: share of reals inside at least one fake ball;
- density: mean number of real balls containing a fake, divided by k;
- coverage: share of reals whose ball contains at least one fake.
"""

from __future__ import annotations

import numpy as np

from gan.metrics.distances import BLOCK, kth_neighbour_within, pairwise


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_radius = kth_neighbour_within(real, k)     # (n_real,)
    f_radius = kth_neighbour_within(fake, k)     # (n_fake,)
    fake_in_real = np.zeros(len(fake), dtype=np.int64)   # real balls containing each fake
    real_in_fake = np.zeros(len(real), dtype=bool)       # real inside some fake ball
    real_covered = np.zeros(len(real), dtype=bool)       # some fake inside the real's ball
    for s in range(0, len(real), BLOCK):
        d = pairwise(real[s:s + BLOCK], fake)            # (block, n_fake)
        inside = d < r_radius[s:s + BLOCK, None]
        fake_in_real += inside.sum(0)
        real_covered[s:s + BLOCK] = inside.any(1)
        real_in_fake[s:s + BLOCK] = (d < f_radius[None, :]).any(1)
    return {
        "precision": float((fake_in_real > 0).mean()),
        "recall": float(real_in_fake.mean()),
        "density": float(fake_in_real.mean() / k),
        "coverage": float(real_covered.mean()),
    }
