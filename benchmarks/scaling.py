"""Benchmark: the DCGAN's training cost per image as the image grows, against the 28-px model.

The conditional DCGAN of ``ganvirt run`` (its default width, batch, R1 and mode seeking) trains
on random images of each shape: 28x28 grey (MNIST, the baseline), 32x32 and 64x64 RGB (colour
MNIST), 128x128 RGB on CUDA. Shapes alternate in rounds in one process; each round times the
steps between two loss reports after a warm-up, and the figures are medians, with each shape's
ratio to the 28-px cost of the same round. Two more rows time another 32-px step in the same
rounds: ``32px-rgb-former-d-pass`` with D's minibatch std as before stop 28 (reals and fakes in
two D calls, the spread by ``Tensor.var``; today's 32-px row against it is that change's gain),
and ``32px-rgb-r1-every-16`` with the R1 penalty every 16th step (weighted by 16, StyleGAN2's
interval) instead of every 4th: what R1's laziness could save, tried on colour MNIST and not
adopted (README, "Lazier R1").

    .venv/bin/python -m benchmarks.scaling [--device cuda] [--steps 48] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import statistics
import time
from unittest import mock

import torch

from benchmarks.common import figure, machine, sync, write
from flows.params import DCGANParams
from gan import dcgan
from gan import train as training
from gan.models import ModelConfig
from gan.train import train

SHAPES = {"28px-grey": (1, 28, 28), "32px-rgb": (3, 32, 32), "32px-rgb-former-d-pass": (3, 32, 32),
          "32px-rgb-r1-every-16": (3, 32, 32), "64px-rgb": (3, 64, 64), "128px-rgb": (3, 128, 128)}


def former_group_std(f: torch.Tensor) -> torch.Tensor:
    """``gan.dcgan.group_std`` before stop 28: the same statistic by ``Tensor.var``."""
    n = len(f)
    g = math.gcd(dcgan.GROUP, n)
    std = f.float().view(n // g, g, *f.shape[1:]).var(1, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))
    return std.to(f.dtype).repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, *f.shape[2:])


# rows timing another step: (module, name, value) patched for their training run
VARIANTS = {
    # the former D pass: its spread by Tensor.var, and a GROUP no batch is a multiple of (two D calls)
    "32px-rgb-former-d-pass": [(dcgan, "group_std", former_group_std), (training, "GROUP", 10**9 + 7)],
    "32px-rgb-r1-every-16": [(training, "R1_EVERY", 16)],
}


def seconds_per_image(shape: tuple[int, int, int], steps: int, device: torch.device, patches=()) -> float:
    """Seconds per training image of the default DCGAN on ``shape``, timed between the reports
    at steps ``steps`` and ``2 * steps`` (the first ``steps`` warm up; a multiple of R1's
    interval puts the same share of R1 steps in every window), with ``patches`` (a ``VARIANTS``
    entry) applied."""
    p = DCGANParams()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2_000, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (2_000,), generator=g)
    model = ModelConfig(kind="dcgan", channels=shape[0], height=shape[1], width=shape[2], num_classes=10,
                        hidden=p.channels)
    cfg = dataclasses.replace(p.model_copy(update={"steps": 2 * steps}).config(), log_every=steps, grid_every=0,
                              checkpoint_every=0, probe_every=0)
    marks = {}

    def report(key, value, step):
        if key == "loss_d":
            sync(device)
            marks[step] = time.perf_counter()

    with contextlib.ExitStack() as stack:
        for module, name, value in patches:
            stack.enter_context(mock.patch.object(module, name, value))
        train(cfg, model, x, y, device=device, report=report)
    return (marks[2 * steps] - marks[steps]) / (steps * cfg.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=48, help="timed steps per shape and round (after as many warm-up steps; "
                    "a multiple of 16, R1's interval)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    shapes = {k: v for k, v in SHAPES.items() if device.type == "cuda" or k != "128px-rgb"}
    times: dict[str, list[float]] = {k: [] for k in shapes}
    for _ in range(args.rounds):
        for name, shape in shapes.items():
            times[name].append(seconds_per_image(shape, args.steps, device, VARIANTS.get(name, ())))
    base = "28px-grey"
    figures = []
    for name in shapes:
        paired = statistics.median(t / b for t, b in zip(times[name], times[base]))
        med = statistics.median(times[name])
        figures.append(figure(f"dcgan.{name}.train_ms_per_image", 1000 * med, "ms per training image (G and D step)",
                              baseline=1000 * statistics.median(times[base])) | {"paired_ratio": round(paired, 3)})
        print(f"{name}: {1000 * med:.3f} ms/image, {1 / med:,.0f} images/s, {paired:.2f}x the 28-px model", flush=True)
    write("scaling" + ("" if device.type == "cpu" else f"-{device.type}"), figures, machine(device))


if __name__ == "__main__":
    main()
