"""Benchmark: sampling a publication against a plain batched forward of the same network.

``gan.sampling.sample_seeds`` keeps "image i depends only on seed + i" (per-seed noise, fixed
chunks, uint8 out). Its cost is measured against the plain way to run the generator: batches of
500, ``torch.randn`` noise, inference mode, float out. Every noise scheme is timed: the default
``splitmix64-quantile16`` (generators trained now), ``splitmix64`` with Box-Muller and the oldest,
one ``torch.Generator`` per seed (generators registered before them). All run alternately, in
rounds, in one process; the figures are medians; ``paired_ratio`` is the median over rounds of each
scheme's rate over the plain forward's in the same round (target: the default scheme ≥ 0.8x).

    .venv/bin/python -m benchmarks.sampling [--device cuda] [--n 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from functools import partial

import numpy as np
import torch

from benchmarks.common import figure, machine, sync, write
from gan.models import ModelConfig, build
from gan.sampling import NOISE, balanced_labels, sample_seeds

MODELS = {  # the 28-px models of `make run` and of MNIST
    "mlp": ModelConfig(kind="mlp", channels=1, height=28, width=28, num_classes=10, hidden=128),
    "dcgan": ModelConfig(kind="dcgan", channels=1, height=28, width=28, num_classes=10, hidden=64),
    "dcgan64": ModelConfig(kind="dcgan", channels=3, height=64, width=64, num_classes=10, hidden=64),
}
TARGET = 0.8
DEFAULT = ModelConfig().noise


@torch.inference_mode()
def plain(G, n: int, device: torch.device) -> None:
    labels = torch.arange(n, device=device) % 10 if G.cfg.conditional else None
    for lo in range(0, n, 500):
        z = torch.randn(min(500, n - lo), G.cfg.z_dim, device=device)
        G(z, labels[lo:lo + 500] if labels is not None else None).cpu()


def rate(fn, n: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--n", type=int, default=10_000, help="sets the images per timed call: 2n for the MLP, n/2 for the "
                    "DCGAN, n/20 at 64 px (default 10000)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    device = torch.device(args.device)
    figures = []
    for name in args.models.split(","):
        n = {"mlp": 2 * args.n, "dcgan": args.n // 2, "dcgan64": args.n // 20}[name]  # 0.1-0.5 s a call
        seeds, labels = np.arange(n), balanced_labels(n, 10)
        models = {scheme: build(dataclasses.replace(MODELS[name], noise=scheme), seed=0)[0].to(device).eval()
                  for scheme in NOISE}
        calls = {"plain": partial(plain, models[DEFAULT], n, device)}
        calls |= {scheme: partial(sample_seeds, G, seeds, labels) for scheme, G in models.items()}
        for fn in calls.values():  # warm up
            fn()
        rates = {k: [] for k in calls}
        for _ in range(args.rounds):
            for key, fn in calls.items():
                rates[key].append(rate(fn, n, device))
        med = {k: statistics.median(v) for k, v in rates.items()}
        for scheme in NOISE:
            # this machine's speed drifts within seconds: the ratio is the median of each round's
            # ratio to the plain forward timed just before it
            paired = statistics.median(o / p for o, p in zip(rates[scheme], rates["plain"]))
            f = figure(f"{name}.sampling.{scheme}", med[scheme], "images/s (uint8, per-seed noise, fixed chunks)",
                       baseline=med["plain"]) | {"paired_ratio": round(paired, 3)}
            if scheme == DEFAULT:
                f |= {"target_ratio": TARGET, "meets_target": paired >= TARGET}
            figures.append(f)
        print(f"{name}: plain {med['plain']:,.0f} img/s, " + ", ".join(
            f"{f['name'].split('.')[-1]} {f['value']:,.0f} (paired {f['paired_ratio']:.2f}x)"
            for f in figures[-len(NOISE):]), flush=True)
    write("sampling" + ("" if device.type == "cpu" else f"-{device.type}"), figures, machine(device))


if __name__ == "__main__":
    main()
