"""Evaluate: score the trained generator with the snapshot's pinned feature extractor; write
the report (JSON, Markdown, plots) to the MLflow run and as Prefect artifacts."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from gan import checkpoint
from gan.evaluate import EvalConfig, fit_extractor, score
from gan.features import FLIPS, SmallCNN, state_hash
from ganvirt import report as reporting
from ganvirt import settings
from ganvirt.gates import GatePolicy
from ganvirt.snapshots import Snapshot
from tasks.tracking import in_prefect_run, run_logger
from tasks.train import CheckpointRef


@dataclass(frozen=True)
class Report:
    metrics: dict[str, float]   # see README "Metrics"; per-class keys contain ".class_"
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
    _atomic_write(folder / "extractor.pt", lambda p: torch.save(model.state_dict(), p))
    _atomic_write(folder / "meta.json", lambda p: p.write_text(json.dumps(
        {"hash": digest, "trtr_accuracy": trtr, "snapshot": snapshot.fingerprint,
         "classifier": cfg.classifier.to_dict()})))
    return model, digest, trtr, False


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


@task(name="evaluate")
def evaluate(ckpt: CheckpointRef, snapshot: Snapshot, cfg: EvalConfig, gate: GatePolicy) -> Report:
    """Compute every metric, judge it against the gates (verdicts only: ``register`` acts on
    them), and log report.json, report.md and plots to the run and to Prefect."""
    logger = run_logger()
    extractor, digest, trtr, cached = extractor_for(snapshot, cfg)
    logger.info("%s feature extractor %s", "reusing cached" if cached else "trained", digest[:16])
    G = checkpoint.load_generator(ckpt.path)
    ev = score(G, snapshot.load(), extractor, cfg)
    metrics = ev.metrics
    if "tstr_accuracy" in metrics and trtr is not None:
        metrics["trtr_accuracy"] = trtr
    verdicts = gate.thresholds(metrics, G.cfg.conditional)
    md = reporting.markdown(ckpt.name, ckpt.run_id, metrics, verdicts, digest, cfg.num_samples)

    mlflow.set_tracking_uri(settings.tracking_uri())
    with mlflow.start_run(run_id=ckpt.run_id), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"ganvirt.extractor_hash": digest, "ganvirt.gates": "passed" if all(
            v["passed"] for v in verdicts.values()) else "failed"})
        mlflow.log_dict({"metrics": metrics, "thresholds": verdicts, "extractor_hash": digest,
                         "evaluation": cfg.to_dict(), "gates": gate.model_dump()}, "report/report.json")
        mlflow.log_text(md, "report/report.md")
        out = Path(tmp)
        reporting.save_picture(reporting.class_grid(ev.images, ev.labels), out / "samples_by_class.png",
                               tile=G.cfg.height)
        threshold = float(np.percentile(ev.distances["holdout_to_train"], 1))
        reporting.distance_histogram(ev.distances, threshold, out / "nearest_train_distances.png")
        mlflow.log_artifacts(tmp, "report")
    if in_prefect_run():
        create_markdown_artifact(md, key=f"{ckpt.name}-evaluation", description="evaluation report")
        create_table_artifact(reporting.rows(metrics, verdicts), key=f"{ckpt.name}-metrics",
                              description="metrics against gates")
    logger.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items() if ".class_" not in k})
    return Report(metrics, digest, ckpt.run_id)
