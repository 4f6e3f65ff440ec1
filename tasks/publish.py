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
from tasks.tracking import client, model_name, run_logger


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


def lineage(mv) -> dict:
    """What a manifest records about a registered version, read back from its MLflow run."""
    run = client().get_run(mv.run_id)
    report = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/report/report.json")
    return {
        "generator": {"model": mv.name, "version": str(mv.version), "run_id": mv.run_id,
                      "uri": f"models:/{mv.name}/{mv.version}"},
        "source": {"uri": run.data.params.get("source"), "fingerprint": run.data.params.get("snapshot")},
        "metrics": report["metrics"],
        "thresholds": report["thresholds"],
        "extractor_hash": report["extractor_hash"],
    }


@task(name="publish")
def publish(name: str, n: int = 10_000, seed: int = 0, expected_version: str | None = None) -> str:
    """Write ``n`` samples (class-balanced when conditional) of the current champion of
    ``<name>-generator`` as a new version of dataset ``name``; image i uses seed ``seed + i``.
    With ``expected_version``, refuse if the champion has moved meanwhile. Returns the folder."""
    logger = run_logger()
    G, mv = load_generator(model_name(name), "champion")
    if expected_version is not None and str(mv.version) != expected_version:
        raise RuntimeError(f"{mv.name}: champion is version {mv.version}, not {expected_version}; "
                           "another run moved it, refusing to publish a stale version")
    labels = balanced_labels(n, G.cfg.num_classes) if G.cfg.conditional else None
    images = sample_seeds(G, seed + np.arange(n, dtype=np.int64), labels)
    counts = np.bincount(labels, minlength=G.cfg.num_classes).tolist() if labels is not None else []
    manifest = {"format": "npz", "shape": list(images.shape), "class_counts": counts, **lineage(mv),
                "seed": seed, "prefect_flow_run_id": str(runtime.flow_run.id or "")}
    folder = catalog.publish(settings.catalog_root(), name,
                             lambda d: write_dataset(d, images, labels), manifest)
    logger.info("published %s version %s: %d images in %s", name, folder.name, n, folder)
    return str(folder)
