"""Benchmark: ingesting a folder of 50,000 PNGs of mixed sizes into a 64x64 RGB snapshot.

What ``ganvirt run --source FOLDER --image-size 64`` does before training: list, read headers,
decode, orient, resize and centre-crop in one process per core, stream into a memory-mapped
snapshot, fingerprint it. Each ingest runs in a fresh child process that reports its own peak
RSS: the target is at most 2x the snapshot's bytes plus 1 GiB. The serial decoder (one
process) runs on the first ``--serial`` images in the same run, as the baseline of a ratio.

    .venv/bin/python -m benchmarks.ingest [--images 50000] [--folder /tmp/ganvirt-ingest-50k]

Writes ``benchmarks/results/ingest.json``. The folder is generated once (about 1 GB) and kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import figure, machine, write

SIZES = [(48, 48), (64, 64), (80, 60), (96, 128), (128, 96), (160, 160), (100, 75), (256, 192)]  # (w, h)
GIB = 1 << 30


def _draw(args: tuple[Path, int]) -> None:
    """One picture: a colour gradient with an ellipse, saved as PNG (RGB, some RGBA and grey)."""
    from PIL import Image, ImageDraw

    path, i = args
    rng = np.random.default_rng(i)
    w, h = SIZES[i % len(SIZES)]
    base = np.linspace(rng.integers(0, 255, 3), rng.integers(0, 255, 3), w).astype(np.uint8)
    im = Image.fromarray(np.broadcast_to(base, (h, w, 3)).copy())
    box = sorted(rng.integers(0, w, 2).tolist()), sorted(rng.integers(0, h, 2).tolist())
    ImageDraw.Draw(im).ellipse([box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1], fill=tuple(rng.integers(0, 255, 3).tolist()))
    if i % 10 == 7:
        im = im.convert("RGBA")
    elif i % 10 == 9:
        im = im.convert("L")
    im.save(path)


def make_folder(folder: Path, n: int) -> None:
    done = folder / f".complete-{n}"
    if done.exists():
        return
    jobs = []
    for i in range(n):
        cls = folder / f"class{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        jobs.append((cls / f"{i:06d}.png", i))
    with ProcessPoolExecutor() as pool:
        list(pool.map(_draw, jobs, chunksize=256))
    done.touch()


CHILD = """
import json, resource, sys, time
from pathlib import Path
from snapshots import images, store, sources
root, scratch, workers, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
if limit:  # the first `limit` files only: a folder of links to them
    sub = scratch / "subset"
    for i, f in enumerate(sorted(root.rglob("*.png"))[:limit]):
        (sub / f.parent.name).mkdir(parents=True, exist_ok=True)
        (sub / f.parent.name / f.name).symlink_to(f)
    root, start = sub, time.perf_counter()
d = images.read_folder(root, images.ImageOptions(size=(64, 64)), scratch, workers=workers or None)
snap, _ = store.create(sources.RawData(d.images, d.labels, d.classes, d.notes, d.file), str(root), scratch)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "images": snap.num_images, "bytes": snap.num_images * 3 * 64 * 64,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "worker_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def ingest(folder: Path, workers: int, limit: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder), scratch, str(workers), str(limit)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--serial", type=int, default=5_000, help="images for the one-process baseline")
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "ganvirt-ingest-50k")
    args = ap.parse_args()
    start = time.perf_counter()
    make_folder(args.folder, args.images)
    print(f"folder ready in {time.perf_counter() - start:.0f} s", flush=True)
    full = ingest(args.folder, 0, 0)
    print("all cores:", full, flush=True)
    serial, parallel = ingest(args.folder, 1, args.serial), ingest(args.folder, 0, args.serial)
    print("subset, one process:", serial, "all cores:", parallel, flush=True)
    limit = 2 * full["bytes"] + GIB
    figures = [
        figure("images", full["images"], "64x64 RGB images in the snapshot"),
        figure("snapshot_bytes", full["bytes"], "bytes"),
        figure("wall_seconds", full["wall_s"], "s (list, headers, decode, snapshot, fingerprint)"),
        figure("images_per_s", full["images"] / full["wall_s"], "images/s"),
        figure("peak_rss_bytes", full["peak_rss"], "bytes (the ingesting process)", baseline=limit, target=limit),
        figure("worker_peak_rss_bytes", full["worker_peak_rss"], "bytes (largest decoding worker)"),
        figure("parallel_speedup", serial["wall_s"] / parallel["wall_s"],
               f"x over one process on the first {args.serial} images ({os.cpu_count()} cores)", baseline=1.0),
    ]
    write("ingest", figures, machine())


if __name__ == "__main__":
    main()
