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
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

import gan
from gan import checkpoint
from gan.evaluate import EvalConfig, fit_extractor, score
from gan.features import FLIPS, SmallCNN, state_hash
from ganvirt import report as reporting
from ganvirt import settings
from ganvirt.gates import GatePolicy
from ganvirt.snapshots import Snapshot
from tasks.tracking import client, experiment_id, in_prefect_run, run_logger
from tasks.train import CheckpointRef


@dataclass(frozen=True)
class Report:
    metrics: dict[str, float]   # see README "Metrics"; per-class keys contain ".class_"
    extractor_hash: str         # sha256 of the extractor weights that produced the scores
    run_id: str


def extractor_folder(snapshot: Snapshot, cfg: EvalConfig) -> Path:
    """Where the extractor of this snapshot and classifier budget is cached."""
    c = cfg.classifier
    return settings.home() / "extractors" / f"{Path(snapshot.path).name}-c{c.steps}x{c.batch_size}-s{c.seed}"


def extractor_for(snapshot: Snapshot, cfg: EvalConfig) -> tuple[SmallCNN, str, float | None, bool]:
    """The snapshot's extractor, trained once and cached beside the snapshots.

    Returns (extractor, weight hash, TRTR accuracy or None, whether it was taken from the cache).
    """
    folder = extractor_folder(snapshot, cfg)
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
         "classifier": cfg.classifier.to_dict(), "channels": snapshot.shape[0], "outputs": outputs,
         "feature_dim": cfg.classifier.feature_dim})))
    return model, digest, trtr, False


def register_extractor(name: str, snapshot: Snapshot, cfg: EvalConfig, digest: str) -> str:
    """Register the extractor as ``<name>-features`` once per weight hash; returns its version."""
    registered = f"{name}-features"
    c = client()
    found = c.search_model_versions(f"name='{registered}' and tags.extractor_hash='{digest}'")
    if found:
        return str(found[0].version)
    folder = extractor_folder(snapshot, cfg)
    c_, h, w = snapshot.shape
    with mlflow.start_run(experiment_id=experiment_id(name), run_name=f"features · {digest[:12]}"):
        mlflow.set_tags({"ganvirt.dataset": name, "ganvirt.stage": "features", "ganvirt.extractor_hash": digest})
        info = mlflow.pyfunc.log_model(
            name="extractor", python_model=str(Path(__file__).with_name("extractor_model.py")),
            artifacts={"weights": str(folder / "extractor.pt"), "meta": str(folder / "meta.json")},
            code_paths=[str(Path(gan.__file__).parent)],
            signature=ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, c_, h, w))]),
                                     outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, cfg.classifier.feature_dim))])),
            pip_requirements=["torch>=2.4", "numpy"])
    mv = mlflow.register_model(info.model_uri, registered, tags={"extractor_hash": digest,
                                                                   "snapshot": snapshot.fingerprint})
    return str(mv.version)


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
    features_version = register_extractor(ckpt.name, snapshot, cfg, digest)
    logger.info("%s feature extractor %s (models:/%s-features/%s)", "reusing cached" if cached else "trained",
                digest[:16], ckpt.name, features_version)
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
