"""Benchmark: training throughput of each model against a plain baseline loop, and the machine's
matmul peak, in one run.

For each model (the seed MLP, unconditional as in the blog post; the conditional DCGAN) and
batch size, it times ``gan.train.train`` and, in the same process, a baseline: the same
architecture (``gan.models.build``) trained by the loop anyone would write first (two D passes,
D's weight gradients computed in the G step, default Adam, a ``.item()`` per step). Work is
counted once, by ``torch.utils.flop_counter`` over one baseline step, and the same FLOPs per
image are credited to both loops: "achieved GFLOP/s" is the baseline algorithm's work per
second, so skipping work counts as speed; our own step's FLOPs are reported beside it. The
peak is the best fp32 (bf16 on CUDA) square matmul rate, measured at the start and again
between the timed windows of each comparison (the fraction of peak uses the latter).

    .venv/bin/python benchmarks/throughput.py [--device cuda] [--seconds 4] [--batches 128,512]

Writes ``benchmarks/results/throughput[-cuda].json``: per figure ``name``, ``value``, ``unit``,
and for comparisons ``baseline`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import figure, machine, sync, write
from gan.models import ModelConfig, build
from gan.train import TrainConfig, train

MODELS = {
    "mlp": ModelConfig(kind="mlp", channels=1, height=28, width=28, num_classes=0, hidden=128),
    "dcgan": ModelConfig(kind="dcgan", channels=1, height=28, width=28, num_classes=10, hidden=64),
}


def matmul_peak(device: torch.device, seconds: float = 1.0, sizes: tuple[int, ...] | None = None) -> tuple[float, str, int]:
    """(best GFLOP/s, dtype, the size that gave it) over a few square sizes (fp32 on CPU, bf16
    on CUDA)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    best, best_n = 0.0, 0
    # not 4096 on the CPU: after a 4096² fp32 matmul (64 MB operands) this process trained the
    # small models about 40% slower for the rest of its life, both loops alike (measured with
    # torch 2.13 on this machine); 1024 and 2048 reach the same peak and leave no trace
    for n in sizes or ((1024, 2048) if device.type == "cpu" else (4096, 8192)):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            reps += 1
            if device.type == "cuda" and reps % 10:
                continue
            sync(device)
        sync(device)
        rate = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
        if rate > best:
            best, best_n = rate, n
    return best, str(dtype).replace("torch.", ""), best_n


class Baseline:
    """The straightforward loop: what a tutorial writes."""

    def __init__(self, model: ModelConfig, images, labels, batch: int, device):
        self.model, self.images, self.labels, self.batch, self.device = model, images, labels, batch, device
        self.G, self.D = (m.to(device) for m in build(model, seed=0))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        self.losses: list[float] = []

    def step(self) -> None:
        idx = torch.randint(len(self.images), (self.batch,), device=self.device)
        real = self.images[idx].float() / 255.0
        y = self.labels[idx] if self.labels is not None else None
        z = torch.randn(self.batch, self.model.z_dim, device=self.device)
        with self.autocast:
            fake = self.G(z, y)
            d_real, d_fake = self.D(real, y).float(), self.D(fake.detach(), y).float()
            loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        with self.autocast:
            out = self.D(fake, y).float()
            loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        self.losses.append(loss_d.item())


def flops_per_image(model: ModelConfig, images, labels, batch: int, device) -> float:
    b = Baseline(model, images, labels, batch, device)
    with FlopCounterMode(display=False) as counter:
        b.step()
    return counter.get_total_flops() / batch


def our_flops_per_image(model: ModelConfig, images, labels, batch: int, device) -> float:
    """FLOPs per image of one step of ``gan.train.train`` (its own algorithm: one D pass over
    real and fake, no D weight gradients in the G step), counted the same way."""
    cfg = TrainConfig(steps=1, batch_size=batch, grid_every=0, checkpoint_every=0, log_every=1)
    with FlopCounterMode(display=False) as counter:
        train(cfg, model, images, labels, device=device)
    return counter.get_total_flops() / batch


WINDOW_S = 0.5  # seconds per timed window, about; both loops are timed in windows of the same steps


def time_baseline(b: Baseline, windows: int, steps: int) -> list[float]:
    """images/s of ``windows`` consecutive windows of ``steps`` baseline steps."""
    rates = []
    for _ in range(windows):
        sync(b.device)
        start = time.perf_counter()
        for _ in range(steps):
            b.step()
        sync(b.device)
        rates.append(steps * b.batch / (time.perf_counter() - start))
    return rates


def time_ours(model, images, labels, batch, device, windows, steps) -> list[float]:
    """images/s of ``gan.train.train`` over ``windows`` windows of one run, read from its
    ``images_seen`` reports (every ``steps`` steps; one host sync each, as in real runs)."""
    stamps: list[float] = []

    def report(key, value, step):
        if key == "images_seen":
            sync(device)
            stamps.append(time.perf_counter())

    cfg = TrainConfig(steps=steps * (windows + 1), batch_size=batch, grid_every=0, checkpoint_every=0,
                      log_every=steps)
    train(cfg, model, images, labels, device=device, report=report)
    return [steps * batch / (b - a) for a, b in zip(stamps, stamps[1:])]  # the first window warms up


def measure(model, images, labels, batch, device, seconds: float, peak_n: int,
            rounds: int = 8) -> tuple[float, float, float, float]:
    """(median images/s of ours, of the baseline, median matmul peak in GFLOP/s at square size
    ``peak_n``, median of the per-round ratios ours/baseline). This machine switches between a
    fast and a slow phase (about 1.6× apart) every few minutes: each round times one baseline
    window, the peak and one window of ours back to back, so a round's ratio compares like
    with like, and the median ratio is the figure to trust."""
    b = Baseline(model, images, labels, batch, device)
    warm = time_baseline(b, 2, 3)[-1]
    steps = max(3, min(100, round(WINDOW_S * warm / batch)))
    rounds = max(rounds, round(seconds / WINDOW_S / 2))
    ours, base, peaks = [], [], []
    for _ in range(rounds):
        base += time_baseline(b, 1, steps)
        peaks.append(matmul_peak(device, 0.3, (peak_n,))[0])
        ours += time_ours(model, images, labels, batch, device, 1, steps)
    ratios = [o / b_ for o, b_ in zip(ours, base)]
    return statistics.median(ours), statistics.median(base), statistics.median(peaks), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per loop, model and batch size")
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--models", default="mlp,dcgan")
    args = ap.parse_args()
    device = torch.device(args.device)
    peak, dtype, peak_n = matmul_peak(device)
    figures = [figure("matmul_peak", peak, f"GFLOP/s ({dtype}, {peak_n}x{peak_n}, at the start)")]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8000, 1, 28, 28), generator=g, dtype=torch.uint8).to(device)
    labels = torch.randint(0, 10, (8000,), generator=g).to(device)
    for name in args.models.split(","):
        model = MODELS[name]
        y = labels if model.conditional else None
        for batch in (int(b) for b in args.batches.split(",")):
            per_image = flops_per_image(model, images, y, batch, device)
            own_per_image = our_flops_per_image(model, images, y, batch, device)
            ours, base, peak, ratio = measure(model, images, y, batch, device, args.seconds, peak_n)
            tag = f"{name}.b{batch}"
            figures += [
                figure(f"{tag}.matmul_peak", peak, f"GFLOP/s ({dtype}, {peak_n}x{peak_n}, between the timed windows)"),
                figure(f"{tag}.train_images_per_s", ours, "images/s (median of the rounds)", baseline=base),
                figure(f"{tag}.speedup_paired", ratio, "x (median over rounds of ours / baseline in the same round)"),
                figure(f"{tag}.gflop_per_image", per_image / 1e9, "GFLOP (baseline step, fwd+bwd)"),
                figure(f"{tag}.achieved_gflops", ours * per_image / 1e9, "GFLOP/s",
                       baseline=base * per_image / 1e9),
                figure(f"{tag}.fraction_of_peak", ours * per_image / 1e9 / peak, "fraction",
                       baseline=base * per_image / 1e9 / peak),
                figure(f"{tag}.own_gflop_per_image", own_per_image / 1e9, "GFLOP (our step's own work)"),
                figure(f"{tag}.own_fraction_of_peak", ours * own_per_image / 1e9 / peak,
                       "fraction (our step's own work per second / peak)"),
            ]
            print(f"{tag}: ours {ours:,.0f} img/s, baseline {base:,.0f} img/s (paired {ratio:.2f}x), "
                  f"{ours * per_image / 1e9 / peak:.0%} of peak {peak:.0f} GFLOP/s by the baseline's work, "
                  f"{ours * own_per_image / 1e9 / peak:.0%} by our own", flush=True)
    write("throughput" + ("" if device.type == "cpu" else f"-{device.type}"), figures, machine(device))


if __name__ == "__main__":
    main()
