"""Publish: sample N images from the champion generator into a new, immutable catalog version."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from prefect import runtime, task

import catalog
from gan.sampling import balanced_labels, sample_seeds
from ganvirt import report as reporting
from ganvirt import settings
from ganvirt.gates import GatePolicy
from ganvirt.snapshots import Snapshot
from tasks.evaluate import Report
from tasks.register import ModelVersionRef
from tasks.tracking import client, run_logger


def load_generator(model: str, alias: str = "champion"):
    """(generator module, model version) behind ``models:/<model>@<alias>``."""
    mlflow.set_tracking_uri(settings.tracking_uri())
    mv = client().get_model_version_by_alias(model, alias)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}/{mv.version}")
    return pyfunc.unwrap_python_model().G, mv


def write_dataset(folder: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    """``data.npz`` (uint8 images, int64 labels) and a ``preview.png`` grid, a row per class."""
    arrays = {"images": images} | ({"labels": labels} if labels is not None else {})
    np.savez_compressed(folder / "data.npz", **arrays)
    reporting.save_picture(reporting.class_grid(images, labels), folder / "preview.png", tile=images.shape[2])


@task(name="publish")
def publish(version: ModelVersionRef, report: Report, snapshot: Snapshot, gate: GatePolicy,
            n: int = 10_000, seed: int = 0) -> str:
    """Write ``n`` samples (class-balanced when conditional) of the champion as a new version of
    the dataset; image i uses seed ``seed + i``. Returns the version folder."""
    logger = run_logger()
    G, mv = load_generator(version.model, "champion")
    if str(mv.version) != version.version:
        raise RuntimeError(f"{version.model}: champion is version {mv.version}, not {version.version}; "
                           "another run moved it, refusing to publish a stale version")
    labels = balanced_labels(n, G.cfg.num_classes) if G.cfg.conditional else None
    images = sample_seeds(G, seed + np.arange(n, dtype=np.int64), labels)
    name = version.model.removesuffix("-generator")
    counts = np.bincount(labels, minlength=G.cfg.num_classes).tolist() if labels is not None else []
    manifest = {
        "format": "npz",
        "shape": list(images.shape),
        "class_counts": counts,
        "generator": {"model": version.model, "version": version.version, "run_id": version.run_id,
                      "uri": f"models:/{version.model}/{version.version}"},
        "source": {"uri": snapshot.source, "fingerprint": snapshot.fingerprint},
        "metrics": report.metrics,
        "thresholds": gate.thresholds(report.metrics, G.cfg.conditional),
        "extractor_hash": report.extractor_hash,
        "seed": seed,
        "prefect_flow_run_id": str(runtime.flow_run.id or ""),
    }
    folder = catalog.publish(settings.catalog_root(), name,
                             lambda d: write_dataset(d, images, labels), manifest)
    logger.info("published %s version %s: %d images in %s", name, folder.name, n, folder)
    return str(folder)
