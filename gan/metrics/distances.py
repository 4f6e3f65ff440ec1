"""Exact nearest-neighbour distances in float64, computed in row blocks to bound memory."""

from __future__ import annotations

import numpy as np

BLOCK = 2048  # rows per block: a (BLOCK, n) float64 distance block


def squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0 against rounding."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]
    sq -= 2 * (a @ b.T)
    return np.maximum(sq, 0, out=sq)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b))."""
    return np.sqrt(squared(a, b))


# Order statistics are taken on squared distances and only the chosen ones are square-rooted:
# sqrt is monotone and correctly rounded, so the results are the same numbers, for a fraction
# of the square roots.

def kth_neighbour_within(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest *other* row of x."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} rows, got {len(x)}")
    out = np.empty(len(x))
    for s in range(0, len(x), BLOCK):
        d = squared(x[s:s + BLOCK], x)
        out[s:s + BLOCK] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself (0)
    return np.sqrt(out)


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of a to its nearest row of b."""
    return nearest_both(a, b)[0]


def nearest_both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance from each row of a to its nearest row of b, and from each row of b to its
    nearest row of a), from one pass over the distance matrix."""
    a_to_b, b_to_a = np.empty(len(a)), np.full(len(b), np.inf)
    for s in range(0, len(a), BLOCK):
        d = squared(a[s:s + BLOCK], b)
        a_to_b[s:s + BLOCK] = d.min(1)
        np.minimum(b_to_a, d.min(0), out=b_to_a)
    return np.sqrt(a_to_b), np.sqrt(b_to_a)


def k_nearest(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices into b, distances) of each row of a's k nearest rows of b, nearest first;
    both (len(a), k)."""
    k = min(k, len(b))
    idx, dist = np.empty((len(a), k), np.int64), np.empty((len(a), k))
    for s in range(0, len(a), BLOCK):
        d = squared(a[s:s + BLOCK], b)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(b) else np.tile(np.arange(len(b)), (len(d), 1))
        order = np.take_along_axis(d, part, 1).argsort(1, kind="stable")
        idx[s:s + BLOCK] = np.take_along_axis(part, order, 1)
        dist[s:s + BLOCK] = np.sqrt(np.take_along_axis(d, idx[s:s + BLOCK], 1))
    return idx, dist


def nearest_images(a: np.ndarray, b: np.ndarray, block: int = 1024) -> np.ndarray:
    """Pixel distance from each uint8 image of a (n, C, H, W) to its nearest image of b, both
    scaled to [0, 1], blocked on both sides: b may be a memory-mapped snapshot of any size."""
    out = np.full(len(a), np.inf)
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1) / 255.0
    for s in range(0, len(a), block):
        q = flat(a[s:s + block])
        for t in range(0, len(b), block):
            np.minimum(out[s:s + block], squared(q, flat(b[t:t + block])).min(1), out=out[s:s + block])
    return np.sqrt(out)
