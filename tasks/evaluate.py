"""Evaluate: score the trained generator with the snapshot's pinned feature extractor."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from prefect import task

from gan import checkpoint
from gan.evaluate import EvalConfig, fit_extractor, score
from gan.features import FLIPS, SmallCNN, state_hash
from ganvirt import settings
from ganvirt.snapshots import Snapshot
from tasks.tracking import run_logger
from tasks.train import CheckpointRef


@dataclass(frozen=True)
class Report:
    metrics: dict[str, float]   # fid_like, fid_like_floor, [tstr_accuracy, trtr_accuracy]
    extractor_hash: str         # sha256 of the extractor weights that produced the scores
    run_id: str


def extractor_for(snapshot: Snapshot, cfg: EvalConfig) -> tuple[SmallCNN, str, float | None, bool]:
    """The snapshot's extractor, trained once and cached beside the snapshots.

    Returns (extractor, weight hash, TRTR accuracy or None, whether it was taken from the cache).
    """
    key = f"{Path(snapshot.path).name}-c{cfg.classifier.steps}x{cfg.classifier.batch_size}-s{cfg.classifier.seed}"
    folder = settings.home() / "extractors" / key
    outputs = snapshot.num_classes if snapshot.num_classes >= 2 else FLIPS
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        model = SmallCNN(snapshot.shape[0], outputs, cfg.classifier.feature_dim)
        model.load_state_dict(torch.load(folder / "extractor.pt", weights_only=True))
        model.eval().requires_grad_(False)
        if state_hash(model) == meta["hash"]:
            return model, meta["hash"], meta["trtr_accuracy"], True
    data = snapshot.load()
    if snapshot.num_classes < 2:
        data["labels"] = None
    model, trtr = fit_extractor(data, snapshot.num_classes, cfg)
    digest = state_hash(model)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"extractor.pt.{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, folder / "extractor.pt")
    meta_tmp = folder / f"meta.json.{os.getpid()}.tmp"
    meta_tmp.write_text(json.dumps({"hash": digest, "trtr_accuracy": trtr,
                                    "snapshot": snapshot.fingerprint, "classifier": cfg.classifier.to_dict()}))
    os.replace(meta_tmp, folder / "meta.json")
    return model, digest, trtr, False


@task(name="evaluate")
def evaluate(ckpt: CheckpointRef, snapshot: Snapshot, cfg: EvalConfig) -> Report:
    """Compute the FID-like score, its floor and (conditional) TSTR beside TRTR; log them to the run."""
    logger = run_logger()
    extractor, digest, trtr, cached = extractor_for(snapshot, cfg)
    logger.info("%s feature extractor %s", "reusing cached" if cached else "trained", digest[:16])
    G = checkpoint.load_generator(ckpt.path)
    data = snapshot.load()
    metrics = score(G, data, extractor, cfg)
    if "tstr_accuracy" in metrics and trtr is not None:
        metrics["trtr_accuracy"] = trtr
    mlflow.set_tracking_uri(settings.tracking_uri())
    with mlflow.start_run(run_id=ckpt.run_id):
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"ganvirt.extractor_hash": digest})
        mlflow.log_dict({"metrics": metrics, "extractor_hash": digest,
                         "evaluation": cfg.to_dict()}, "report.json")
    logger.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    return Report(metrics, digest, ckpt.run_id)
