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
from gan.evaluate import EvalConfig, pixels, real_split, score
from gan.explain import neighbours
from gan.features import extract
from tasks import explain, locks
from tasks import report as reporting
from tasks.features import extractor_folder, extractor_for, register_extractor
from tasks.gates import GatePolicy
from tasks.home import tracking_uri
from tasks.refs import CheckpointRef, Report, Snapshot
from tasks.tracking import client, experiment_id, in_prefect_run, link_artifact, run_logger


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
    if ckpt.privacy:  # the gate's max_epsilon reads it; non-DP runs have none (and fail that gate)
        metrics["epsilon"] = ckpt.privacy["epsilon"]
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
        by_class = reporting.class_grid(ev.images, ev.labels)
        reporting.save_picture(by_class, out / "samples_by_class.png", tile=G.cfg.height)
        threshold = float(np.percentile(ev.distances["holdout_to_train"], 1))
        reporting.distance_histogram(ev.distances, threshold, out / "nearest_train_distances.png")
        _explain(out, ckpt, G, ev, snapshot, extractor, metrics, verdicts, by_class)
        mlflow.log_artifacts(tmp, "report")
    link_artifact(ckpt.name, "report", f"experiments/{experiment_id(ckpt.name)}/runs/{ckpt.run_id}/artifacts",
                  "owner's report (report/index.html in the run's artifacts)")
    if in_prefect_run():
        create_markdown_artifact(md, key=f"{ckpt.name}-evaluation", description="evaluation report")
        create_table_artifact(reporting.rows(metrics, verdicts), key=f"{ckpt.name}-metrics",
                              description="metrics against gates")
    logger.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items() if ".class_" not in k})
    return Report(metrics, digest, ckpt.run_id)


def _explain(out: Path, ckpt: CheckpointRef, G, ev, snapshot: Snapshot, extractor, metrics, verdicts, by_class) -> None:
    """The owner's panels and ``index.html`` (``tasks.explain``) from this evaluation's samples,
    the real train split and the run's training curves."""
    train, _, _, _ = real_split(snapshot.load())
    nb = neighbours(pixels(ev.images), pixels(train), extract(extractor, ev.images), extract(extractor, train),
                    ev.distances["holdout_to_train"])
    tracker = client()
    history = {k: [(m.step, m.value) for m in tracker.get_metric_history(ckpt.run_id, k)]
               for k in ("loss_d", "loss_g", "probe_score")}
    best = tracker.get_run(ckpt.run_id).data.metrics.get("best_step")
    explain.write_panels(out, f"{ckpt.name}: what the generator learned (run {ckpt.run_id})", G, ev.images, train, nb,
                         metrics, verdicts, by_class, history, int(best) if best is not None else None)
