"""Writers of small IDX files for tests."""

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def write_idx(path: Path, a: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_pair(folder: Path, prefix: str, n: int, size: int = 8, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return x, y
