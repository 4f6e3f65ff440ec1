"""Benchmark: publishing and pulling 60,000 28×28 images per format, local store.

Publish = write the format into a staging folder, hash every file, commit the version. Pull =
copy into an empty folder and verify every sha256, then read the arrays back (what a consumer
does). PNG and Parquet encode/decode PNGs in one process per core; ``--workers 1`` times the
serial baseline too, as a ratio.

    .venv/bin/python -m benchmarks.catalog_io [--n 60000]

Writes ``benchmarks/results/catalog_io.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import catalog
from benchmarks.common import figure, machine, write
from catalog import formats

TARGET_NPZ_S = 5.0


def publish_and_pull(root: Path, fmt: str, images, labels, out: Path) -> tuple[float, float]:
    start = time.perf_counter()
    catalog.publish(root, fmt, lambda d: formats.write(fmt, d, images, labels), {"format": fmt})
    published = time.perf_counter() - start
    start = time.perf_counter()
    catalog.pull(root, fmt, out)
    got, got_labels = formats.read(fmt, out)
    pulled = time.perf_counter() - start
    assert np.array_equal(got, images) and np.array_equal(got_labels, labels)
    return published, pulled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # digit-like content (mostly dark, a blob of ink) so that compression behaves as on MNIST
    yy, xx = np.mgrid[:28, :28]
    ink = np.exp(-(((yy - 14) / 6.0) ** 2 + ((xx - 14) / 4.0) ** 2))
    images = (ink[None] * rng.uniform(0, 255, (args.n, 1, 28, 28))).astype(np.uint8)
    labels = rng.integers(0, 10, args.n).astype(np.int64)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats.FORMATS:
            pub, pull = publish_and_pull(Path(tmp) / "cat", fmt, images, labels, Path(tmp) / f"out-{fmt}")
            extra = {"target": TARGET_NPZ_S} if fmt == "npz" else {}
            figures += [figure(f"{fmt}.publish_seconds", pub, f"s for {args.n} images"),
                        figure(f"{fmt}.pull_seconds", pull, f"s for {args.n} images (copy, verify, read)"),
                        figure(f"{fmt}.publish_plus_pull_seconds", pub + pull, "s", **extra),
                        figure(f"{fmt}.images_per_s", args.n / (pub + pull), "images/s (publish + pull)")]
            print(f"{fmt}: publish {pub:.2f} s, pull {pull:.2f} s", flush=True)
        # the serial baseline of the parallel PNG path, in the same run
        formats.PARALLEL_MIN = 10**12
        pub, pull = publish_and_pull(Path(tmp) / "cat-serial", "png", images, labels, Path(tmp) / "out-serial")
        par = next(f["value"] for f in figures if f["name"] == "png.publish_plus_pull_seconds")
        figures.append(figure("png.parallel_speedup", (pub + pull) / par, f"x over one process ({os.cpu_count()} cores)",
                              baseline=1.0))
        print(f"png serial: publish {pub:.2f} s, pull {pull:.2f} s", flush=True)
    write("catalog_io", figures, machine())


if __name__ == "__main__":
    main()
