"""Benchmark: minutes of training until TSTR ≥ 0.95 on the MNIST split, per model.

Each model trains on the real MNIST test split (8,000 train / 2,000 holdout, stratified, seed 0)
with its own good settings (as in ``benchmarks/quality_mnist.py``). At every check, the EMA
generator's TSTR is measured the way the flow measures it (the evaluation classifier trained on
10,000 class-balanced samples, tested on the real holdout). Minutes count training only: the
checks are timed apart and subtracted. A model that does not reach the bar within its budget
reports null.

    .venv/bin/python -m benchmarks.time_to_quality [--device cuda] [--minutes 15]

Writes ``benchmarks/results/time_to_quality[-cuda].json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import machine, write
from benchmarks.quality_mnist import RUNS
from gan.evaluate import EvalConfig, real_split
from gan.features import accuracy, train_classifier
from gan.models import ModelConfig
from gan.sampling import balanced_labels, sample
from gan.train import TrainConfig, train
from snapshots import sources
from snapshots import store as snapshots

BAR = 0.95


class Reached(Exception):
    pass


def minutes_to_bar(kind: str, data: dict, device: str, budget_min: float, checks: int) -> tuple[float | None, list]:
    batch, lr, width, schedule = RUNS[kind]
    xt, yt, xh, yh = real_split(data)
    cfg_eval = EvalConfig()
    rate = {"mlp": 30_000, "dcgan": 1_500}[kind] * (20 if device == "cuda" else 1)  # rough images/s
    steps = int(budget_min * 60 * rate / batch)
    every = max(100, steps // checks // 100 * 100)
    curve: list[dict] = []
    spent = {"checks": 0.0}
    start = time.perf_counter()

    def check(G) -> float:
        t0 = time.perf_counter()
        labels = balanced_labels(cfg_eval.num_samples, 10)
        clf = train_classifier(sample(G, cfg_eval.num_samples, 10**9, labels), labels, 10, cfg_eval.classifier)
        tstr = accuracy(clf, xh, yh)
        spent["checks"] += time.perf_counter() - t0
        minutes = (time.perf_counter() - start - spent["checks"]) / 60
        curve.append({"step": len(curve) * every + every, "images": (len(curve) + 1) * every * batch,
                      "train_minutes": round(minutes, 3), "tstr_accuracy": tstr})
        print(f"{kind}: {curve[-1]}", flush=True)
        if tstr >= BAR:
            raise Reached
        if minutes > budget_min:
            raise TimeoutError
        return 1.0 - tstr

    cfg = TrainConfig(batch_size=batch, steps=steps, lr=lr, lr_schedule=schedule, grid_every=0, checkpoint_every=0,
                      probe_every=every, log_every=100)
    model = ModelConfig(kind=kind, channels=1, height=28, width=28, num_classes=10, hidden=width)
    try:
        train(cfg, model, torch.from_numpy(xt), torch.from_numpy(yt), device=device, probe=check)
    except Reached:
        return curve[-1]["train_minutes"], curve
    except TimeoutError:
        pass
    return None, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per model")
    ap.add_argument("--checks", type=int, default=8, help="TSTR checks within the budget")
    ap.add_argument("--models", default="dcgan,mlp")
    args = ap.parse_args()
    raw = sources.read(args.mnist, downloads=None)
    tr, ho = snapshots.stratified_split(raw.labels, len(raw.images), 0.2, 0)
    data = {"images": raw.images, "labels": raw.labels, "train": tr, "holdout": ho}
    figures, curves = [], {}
    for kind in args.models.split(","):
        minutes, curve = minutes_to_bar(kind, data, args.device, args.minutes, args.checks)
        curves[kind] = curve
        figures.append({"name": f"{kind}.minutes_to_tstr_{BAR}", "value": minutes, "unit": "min (training only)",
                        "budget_min": args.minutes, "best_tstr": max((c["tstr_accuracy"] for c in curve), default=None)})
    about = machine(args.device) | {"curves": curves}
    write("time_to_quality" + ("" if args.device == "cpu" else f"-{args.device}"), figures, about)


if __name__ == "__main__":
    main()
