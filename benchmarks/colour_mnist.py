"""Benchmark data: "colour MNIST", an RGB image folder anyone can rebuild offline.

From MNIST's 10,000 test images (the IDX files in ``--mnist``): each digit's stroke and its
background get a colour drawn per image from two fixed palettes, independently of the class
(seeded, so the folder is the same on every machine); the 28x28 digits are upscaled (Lanczos)
to each ``--sizes`` and written as PNGs in class sub-folders, ``<out>/colour-mnist-<size>/<digit>/<index>.png``.
File names keep MNIST's order within a class, so ``ganvirt run``'s stratified 80/20 split (seed
0) holds out the same 2,000 images as on the IDX files (checked here).

    .venv/bin/python -m benchmarks.colour_mnist [--mnist ../shared/data/mnist] [--out /tmp] [--sizes 32,64]
    .venv/bin/python -m benchmarks.colour_mnist --sizes 32 --run     # then the whole flow, default settings

With ``--run`` it then runs ``ganvirt run --source <folder>`` (default settings, a fresh
``GANVIRT_HOME`` under ``--out``) for each size and writes the scores, the training minutes and
the training cost per image to ``benchmarks/results/colour_mnist-<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from snapshots import sources
from snapshots.store import stratified_split

STROKES = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [250, 250, 250], [170, 110, 40]], np.float32)
BACKGROUNDS = np.array([[0, 0, 0], [0, 0, 128], [128, 0, 0], [0, 80, 0], [64, 64, 64],
                        [255, 250, 200], [230, 190, 255], [170, 255, 195], [255, 215, 180], [200, 200, 200]], np.float32)
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"


def colourise(images: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (N, 28, 28) grey digits → uint8 (N, 28, 28, 3): stroke colour where the digit is,
    background colour elsewhere, blended by the grey level. Stroke and background are drawn per
    image, uniformly and independently of each other and of the class; a stroke never gets the
    background's colour. Returns (images, stroke index, background index)."""
    rng = np.random.default_rng(seed)
    stroke = rng.integers(0, len(STROKES), len(images))
    background = rng.integers(0, len(BACKGROUNDS), len(images))
    same = np.all(STROKES[stroke] == BACKGROUNDS[background], axis=1)
    stroke[same] = (stroke[same] + 1) % len(STROKES)
    a = images.astype(np.float32)[..., None] / 255.0
    rgb = BACKGROUNDS[background][:, None, None] * (1 - a) + STROKES[stroke][:, None, None] * a
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), stroke, background


def write_folder(rgb: np.ndarray, labels: np.ndarray, size: int, out: Path) -> Path:
    """One PNG per image, upscaled to ``size``, in ``out/<label>/<index>.png``; written to a
    temporary folder and renamed, so a folder that exists is complete."""
    folder = out / f"colour-mnist-{size}"
    if folder.exists():
        return folder
    tmp = out / f".colour-mnist-{size}.tmp{os.getpid()}"
    for digit in np.unique(labels):
        (tmp / str(digit)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(rgb, labels)):
        picture = Image.fromarray(image, "RGB")
        if size != picture.width:
            picture = picture.resize((size, size), Image.Resampling.LANCZOS)
        picture.save(tmp / str(label) / f"{i:05d}.png", optimize=False, compress_level=1)
    os.replace(tmp, folder)
    return folder


def same_split(labels: np.ndarray) -> bool:
    """Does the class-folder order hold out the same images as the IDX order (seed 0, 20%)?"""
    _, hold = stratified_split(labels, len(labels), 0.2, 0)
    order = np.argsort(labels, kind="stable")  # class folders, MNIST order within each
    _, hold_folder = stratified_split(labels[order], len(labels), 0.2, 0)
    return set(hold.tolist()) == set(order[hold_folder].tolist())


def run_flow(folder: Path, home: Path, extra: list[str]) -> dict:
    """``ganvirt run`` on ``folder`` with default settings (plus ``extra`` flags); its scores and
    timings, also when a gate stopped it (exit 1 with the verdicts on stderr)."""
    env = {**os.environ, "GANVIRT_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ganvirt.cli", "run", "--source", str(folder), *extra],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    try:
        result = collect(home)
    except LookupError:
        raise RuntimeError(f"ganvirt run failed ({proc.returncode}) before scoring:\n{proc.stderr[-3000:]}") from None
    said = [line for line in proc.stderr.splitlines() if line.startswith("ganvirt: ")]  # not Prefect's log
    verdict = (said or proc.stderr.strip().splitlines() or ["?"])[-1] if proc.returncode else "published"
    return {"exit": proc.returncode, "verdict": verdict, "wall_minutes": round(wall / 60, 2), **result}


def collect(home: Path) -> dict:
    """The latest scored run under ``home``: its metrics, training minutes and steps. Training
    time runs from the first to the last ``images_seen`` report (every 100 steps), extended by
    one interval at the same pace."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`ganvirt.stage` = 'train'", order_by=["attributes.start_time DESC"], max_results=1)
    if not runs or "fid_like" not in runs[0].data.metrics:
        raise LookupError(f"no scored run under {home}")
    run = runs[0]
    seen = client.get_metric_history(run.info.run_id, "images_seen")
    first, last = min(seen, key=lambda m: m.step), max(seen, key=lambda m: m.step)
    per_step = (last.timestamp - first.timestamp) / 1000 / max(1, last.step - first.step)
    train_seconds = per_step * last.step
    keys = ("tstr_accuracy", "trtr_accuracy", "fid_like", "fid_like_floor", "fid_like_ratio", "fid_like_ratio.std",
            "precision", "recall", "mia_auc", "near_copy_share")
    return {"run_id": run.info.run_id, "train_minutes": round(train_seconds / 60, 2), "train_steps": int(last.step),
            "images_seen": int(last.value), "train_ms_per_image": round(1000 * train_seconds / last.value, 4),
            **{k: run.data.metrics.get(k) for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=Path(os.environ.get("GANVIRT_MNIST", "../shared/data/mnist")))
    ap.add_argument("--out", type=Path, default=Path("/tmp"))
    ap.add_argument("--sizes", default="32,64", help="comma-separated sides in pixels (default 32,64)")
    ap.add_argument("--run", action="store_true", help="then run the whole flow on each folder, default settings")
    ap.add_argument("--flags", default="", help="extra 'ganvirt run' flags with --run, e.g. '--steps 2000'")
    args = ap.parse_args()
    raw = sources.read(str(args.mnist), downloads=None)
    grey, labels = raw.images[:, 0], raw.labels.astype(np.int64)
    if not same_split(labels):
        sys.exit("colour_mnist: the class-folder order would not hold out the MNIST benchmark's images")
    rgb, _, _ = colourise(grey)
    args.out.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        folder = write_folder(rgb, labels, size, args.out)
        print(f"{folder}: {len(rgb)} images {size}x{size} RGB ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.run:
            result = {"size": size, "folder": str(folder), "flags": args.flags,
                      **run_flow(folder, args.out / f"home-colour-{size}", args.flags.split())}
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"colour_mnist-{size}.json").write_text(json.dumps(result, indent=1))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
