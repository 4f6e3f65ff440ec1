"""Evaluate: score the trained generator with the snapshot's pinned feature extractor; write
the report (JSON, Markdown, plots) to the MLflow run and as Prefect artifacts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from gan import checkpoint
from gan.evaluate import EvalConfig, score
from tasks import locks
from tasks import report as reporting
from tasks.features import extractor_folder, extractor_for, register_extractor
from tasks.gates import GatePolicy
from tasks.home import tracking_uri
from tasks.refs import CheckpointRef, Report, Snapshot
from tasks.tracking import in_prefect_run, run_logger


@task(name="evaluate")
def evaluate(ckpt: CheckpointRef, snapshot: Snapshot, cfg: EvalConfig, gate: GatePolicy) -> Report:
    """Compute every metric, judge it against the gates (verdicts only: ``register`` acts on
    them), and log report.json, report.md and plots to the run and to Prefect."""
    logger = run_logger()
    # one process trains and registers a snapshot's extractor; concurrent runs wait and reuse it
    with locks.held(f"extractor:{extractor_folder(snapshot, cfg).name}", log=logger.info):
        extractor, digest, trtr, cached = extractor_for(snapshot, cfg)
        features_version = register_extractor(ckpt.name, snapshot, cfg, extractor, digest)
    logger.info("%s feature extractor %s (models:/%s-features/%s)", "reusing cached" if cached else "trained",
                digest[:16], ckpt.name, features_version)
    G = checkpoint.load_generator(ckpt.path)
    ev = score(G, snapshot.load(), extractor, cfg)
    metrics = ev.metrics
    if "tstr_accuracy" in metrics and trtr is not None:
        metrics["trtr_accuracy"] = trtr
    verdicts = gate.thresholds(metrics, G.cfg.conditional)
    md = reporting.markdown(ckpt.name, ckpt.run_id, metrics, verdicts, digest, cfg.num_samples)

    mlflow.set_tracking_uri(tracking_uri())
    with mlflow.start_run(run_id=ckpt.run_id), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"ganvirt.extractor_hash": digest, "ganvirt.features_version": features_version,
                         "ganvirt.gates": "passed" if all(
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
