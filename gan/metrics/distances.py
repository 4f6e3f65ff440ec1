"""Exact nearest-neighbour distances in float64, computed in blocks on both sides to bound memory.

Rows may be float (used as they are) or uint8 pixels (scaled to [0, 1] block by block), so that
image sets of any size are compared without a float copy of either: a memory-mapped snapshot
stays on disk, 10,000 64x64 RGB samples stay 123 MB instead of 983 MB.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK = 2048             # rows per block at most
BLOCK_VALUES = 1 << 22   # values per converted block at most (32 MB of float64)


def as_float(x: np.ndarray) -> np.ndarray:
    """Rows as float64: uint8 pixels scaled to [0, 1], anything else as it is."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.reshape(len(x), -1).astype(np.float64) / 255.0
    return np.asarray(x, np.float64).reshape(len(x), -1)


def blocks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float64 rows) over ``x`` in blocks of at most ``BLOCK`` rows and ``BLOCK_VALUES``
    values."""
    width = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    rows = max(1, min(BLOCK, BLOCK_VALUES // max(1, width)))
    for s in range(0, len(x), rows):
        yield s, as_float(x[s:s + rows])


def squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0 against rounding."""
    a, b = as_float(a), as_float(b)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]
    sq -= 2 * (a @ b.T)
    return np.maximum(sq, 0, out=sq)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b))."""
    return np.sqrt(squared(a, b))


def _rows_to(a_block: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances (len(a_block), len(b)) of a float block to every row of b, b blocked."""
    return np.concatenate([squared(a_block, bb) for _, bb in blocks(b)], axis=1)


# Order statistics are taken on squared distances and only the chosen ones are square-rooted:
# sqrt is monotone and correctly rounded, so the results are the same numbers, for a fraction
# of the square roots.

def kth_neighbour_within(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest *other* row of x."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} rows, got {len(x)}")
    out = np.empty(len(x))
    for s, xb in blocks(x):
        out[s:s + len(xb)] = np.partition(_rows_to(xb, x), k, axis=1)[:, k]  # index 0: the row itself (0)
    return np.sqrt(out)


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of a to its nearest row of b."""
    return nearest_both(a, b)[0]


def nearest_both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance from each row of a to its nearest row of b, and from each row of b to its
    nearest row of a), from one pass over the distance matrix."""
    a_to_b, b_to_a = np.full(len(a), np.inf), np.full(len(b), np.inf)
    for s, ab in blocks(a):
        for t, bb in blocks(b):
            d = squared(ab, bb)
            np.minimum(a_to_b[s:s + len(ab)], d.min(1), out=a_to_b[s:s + len(ab)])
            np.minimum(b_to_a[t:t + len(bb)], d.min(0), out=b_to_a[t:t + len(bb)])
    return np.sqrt(a_to_b), np.sqrt(b_to_a)


def k_nearest(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices into b, distances) of each row of a's k nearest rows of b, nearest first;
    both (len(a), k)."""
    k = min(k, len(b))
    idx, dist = np.empty((len(a), k), np.int64), np.empty((len(a), k))
    for s, ab in blocks(a):
        d = _rows_to(ab, b)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(b) else np.tile(np.arange(len(b)), (len(d), 1))
        order = np.take_along_axis(d, part, 1).argsort(1, kind="stable")
        idx[s:s + len(ab)] = np.take_along_axis(part, order, 1)
        dist[s:s + len(ab)] = np.sqrt(np.take_along_axis(d, idx[s:s + len(ab)], 1))
    return idx, dist


def nearest_images(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel distance from each uint8 image of a (n, C, H, W) to its nearest image of b, both
    scaled to [0, 1]; b may be a memory-mapped snapshot of any size."""
    return nearest(a.reshape(len(a), -1), b.reshape(len(b), -1))
