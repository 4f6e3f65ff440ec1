"""Benchmark: synthetic MNIST quality per CPU budget, the conditional DCGAN against the seed MLP.

Both train on the real MNIST test split (8,000 train / 2,000 holdout, stratified, seed 0) for
the same number of images seen, keep the best EMA generator by the FID-like probe (against
train images), and are scored by the same pinned extractor on 10,000 samples. Prints a JSON
table (tstr, trtr, fid_like, floor, precision, recall, images seen, minutes); with --figure,
writes a per-class sample grid of the DCGAN's EMA generator. Same seed → same numbers on CPU.
With ``--variant dp_epsilon=E`` the DCGAN trains its discriminator with DP-SGD, with the DP
recipe of ``ganvirt run --dp-epsilon`` (``flows.params.DP_RECIPE``; one conv per D stage, no
minibatch std) and no probe: the last EMA generator is scored, as the flow registers it.

    .venv/bin/python -m benchmarks.quality_mnist [--images N] [--figure docs/mnist-dcgan.png] [--device cuda]
    .venv/bin/python -m benchmarks.quality_mnist --models dcgan --variant dp_epsilon=10
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from flows.params import DP_RECIPE, DCGANParams
from gan.evaluate import EvalConfig, fit_extractor, make_probe, real_split, score
from gan.models import ModelConfig
from gan.private import private_model
from gan.train import TrainConfig, train
from snapshots import sources
from snapshots import store as snapshots
from tasks import report

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = {  # model → (batch size, peak lr, width, lr schedule): each model's own good settings
    "dcgan": (64, DCGANParams().lr, 64, DCGANParams().lr_schedule),  # `ganvirt run`'s
    "mlp": (128, 1e-3, 128, "constant"),  # the seed's lr (2e-4) collapses on 8,000 MNIST images
}


def _typed(key: str, text: str):
    """A --variant value as its config field's type (TrainConfig or ModelConfig)."""
    default = getattr(ModelConfig(), key) if hasattr(ModelConfig(), key) else getattr(TrainConfig(), key)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    return type(default)(text)


def run(kind: str, data: dict, images_budget: int, extractor, trtr: float, seed: int,
        device: str = "cpu", variant: dict | None = None) -> tuple[dict, object]:
    v = dict(variant or {})
    private = float(v.get("dp_epsilon", 0)) > 0
    if kind == "dcgan" and private:  # the DP recipe, as `ganvirt run --dp-epsilon` applies it
        recipe = {("width" if k == "channels" else "batch" if k == "batch_size" else k): str(x) for k, x in DP_RECIPE.items()
                  if k not in ("steps", "checkpoint_every")}
        v = {**recipe, **v}
    batch, lr, width, schedule = RUNS[kind]
    batch, lr, width = int(v.pop("batch", batch)), float(v.pop("lr", lr)), int(v.pop("width", width))
    v.setdefault("lr_schedule", schedule)
    if kind == "dcgan":
        v.setdefault("mode_seeking", DCGANParams().mode_seeking)
        v.setdefault("mode_seeking_cap", DCGANParams().mode_seeking_cap)
        v.setdefault("r1", DCGANParams().r1)
    xt, yt, _, _ = real_split(data)
    steps = images_budget // batch
    model_keys = {f.name for f in fields(ModelConfig)}
    extra = {k: _typed(k, x) for k, x in v.items() if k not in model_keys}  # loss=hinge, ema_beta=…
    cfg = TrainConfig(batch_size=batch, steps=steps, lr=lr, seed=seed, grid_every=0,
                      probe_every=0 if private else max(100, steps // 15 // 100 * 100), log_every=100,
                      checkpoint_every=0, **extra)  # DP: no selection on real train images
    c, h, w = data["images"].shape[1:]
    model = ModelConfig(kind=kind, channels=c, height=h, width=w, num_classes=10, hidden=width,
                        **{k: _typed(k, x) for k, x in v.items() if k in model_keys})  # spectral_norm=1
    if private:
        model = private_model(model)
    t0 = time.perf_counter()
    res = train(cfg, model, torch.from_numpy(xt), torch.from_numpy(yt), device=device,
                probe=None if private else make_probe(extractor, xt, yt, seed=seed))
    minutes = (time.perf_counter() - t0) / 60
    ev = score(res.ema, data, extractor, EvalConfig())
    m = ev.metrics
    row = {"model": kind, "tstr_accuracy": m["tstr_accuracy"], "tstr_accuracy.std": m.get("tstr_accuracy.std"),
           "trtr_accuracy": trtr,
           "fid_like": m["fid_like"], "fid_like_floor": m["fid_like_floor"],
           "fid_ratio": m["fid_like"] / m["fid_like_floor"], "precision": m["precision"],
           "recall": m["recall"], "images_seen": res.steps * batch, "best_step": res.best_step,
           "steps": res.steps, "batch_size": batch, "lr": lr, "width": width, "lr_schedule": cfg.lr_schedule, "loss": cfg.loss,
           "ema_beta": cfg.ema_beta, "augment": cfg.augment, "spectral_norm": model.spectral_norm,
           "mode_seeking": cfg.mode_seeking, "mode_seeking_cap": cfg.mode_seeking_cap, "r1": cfg.r1, "d_convs": model.d_convs, "minibatch_std": model.minibatch_std,
           "latent_modulation": model.latent_modulation,
           "train_minutes": round(minutes, 2), "device": device, "d_steps": cfg.d_steps,
           "privacy": res.privacy.to_dict() if res.privacy else None, "mia_auc": m.get("mia_auc")}
    return row, ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", "--source", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist"),
                    help="MNIST's IDX folder, or an image folder of 10 classes (e.g. colour MNIST from benchmarks.colour_mnist)")
    ap.add_argument("--images", type=int, default=DCGANParams().steps * DCGANParams().batch_size,
                    help="images seen by each model (the budget; default: `ganvirt run --model dcgan`'s, %(default)s)")
    ap.add_argument("--models", default="dcgan,mlp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", type=Path, help="write the DCGAN's per-class sample grid here")
    ap.add_argument("--variant", default="", help="overrides, e.g. 'lr=1e-4,loss=hinge,ema_beta=0.9995,batch=128,width=64'")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", type=Path, help="also write the table here (default: benchmarks/results/quality_mnist.json "
                                             "for a run of the defaults on the CPU, nowhere for a --variant)")
    ap.add_argument("--device", default="cpu", help="where to train (cpu, cuda: bf16 autocast); scoring runs on the CPU")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    variant = dict(kv.split("=", 1) for kv in args.variant.split(",") if kv)
    raw = sources.read(args.mnist, downloads=None)
    tr, ho = snapshots.stratified_split(raw.labels, len(raw.images), 0.2, 0)
    data = {"images": raw.images, "labels": raw.labels, "train": tr, "holdout": ho}
    extractor, trtr = fit_extractor(data, 10, EvalConfig())
    rows = []
    for kind in args.models.split(","):
        row, ev = run(kind, data, args.images, extractor, trtr, args.seed, args.device, variant)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if kind == "dcgan" and args.figure:
            args.figure.parent.mkdir(parents=True, exist_ok=True)
            report.save_picture(report.class_grid(ev.images, ev.labels), args.figure, tile=ev.images.shape[-1])
    table = json.dumps({"benchmark": "quality_mnist", "train": len(tr), "holdout": len(ho),
                        "threads": torch.get_num_threads(), "rows": rows}, indent=2)
    print(table)
    default = not variant and args.device == "cpu" and Path(args.mnist).resolve() == Path(ap.get_default("mnist")).resolve()
    out = args.out or (RESULTS / "quality_mnist.json" if default else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
