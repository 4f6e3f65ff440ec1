"""Exact nearest-neighbour distances in float64, computed in row blocks to bound memory."""

from __future__ import annotations

import numpy as np

BLOCK = 2048  # rows per block: a (BLOCK, n) float64 distance block


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)); clipped at 0 against rounding."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


def kth_neighbour_within(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest *other* row of x."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} rows, got {len(x)}")
    out = np.empty(len(x))
    for s in range(0, len(x), BLOCK):
        d = pairwise(x[s:s + BLOCK], x)
        out[s:s + BLOCK] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself (0)
    return out


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of a to its nearest row of b."""
    out = np.empty(len(a))
    for s in range(0, len(a), BLOCK):
        out[s:s + BLOCK] = pairwise(a[s:s + BLOCK], b).min(1)
    return out
