"""Publish: sample N images from the champion generator into a new, immutable catalog version.

Three steps, so that sampling fans out: ``plan`` pins the champion's version, ``sample_shard``
is mapped over shards of ``SHARD_SIZE`` images (any task runner, Dask included, can spread them),
``commit`` joins them and publishes atomically. ``flows.publication.publish_dataset`` chains them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import mlflow
import numpy as np
from prefect import runtime, task

import catalog
from catalog import formats
from catalog.store import owner_tag, sweep_orphans
from gan.evaluate import pixels, real_split
from gan.metrics.distances import nearest, nearest_images
from registry.generators import (
    NearCopies,
    NotRegistered,
    load_version,
    replace_near_copies,
    sample_publication,
    version_of,
)
from snapshots import store as snapshots
from tasks import privacy
from tasks import report as reporting
from tasks.home import catalog_root, home, snapshot_root, tracking_uri
from tasks.refs import Plan, Snapshot
from tasks.tracking import client, run_logger


def write_dataset(folder: Path, images: np.ndarray, labels: np.ndarray | None, fmt: str = "npz",
                  virtual: bool = False) -> None:
    """The data files in ``fmt`` (none when ``virtual``) and a ``preview.png`` grid, a row per class."""
    if not virtual:
        formats.write(fmt, folder, images, labels)
    reporting.save_picture(reporting.class_grid(images, labels), folder / "preview.png", tile=images.shape[2])


def lineage(mv) -> dict:
    """What a manifest records about a registered version, read back from its MLflow run."""
    run = client().get_run(mv.run_id)
    report = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/report/report.json")
    return {
        "generator": {"model": mv.name, "version": str(mv.version), "run_id": mv.run_id,
                      "uri": f"models:/{mv.name}/{mv.version}"},
        "source": {"uri": run.data.params.get("source"), "fingerprint": run.data.params.get("snapshot")},
        "privacy": privacy.manifest_entry(run.data.params),
        "metrics": report["metrics"],
        "thresholds": report["thresholds"],
        "extractor_hash": report["extractor_hash"],
    }


SHARD_SIZE = 10_000  # images per mapped sampling task


FINAL = (NotRegistered, NearCopies)  # a second try cannot change these


def _worth_a_retry(task, run, state) -> bool:
    """Retry what may pass on a second try (the tracking server's or the store's I/O), not a
    missing model or a generator of near copies."""
    try:
        state.result()
    except FINAL:
        return False
    except Exception:
        return True
    return False


@task(name="plan publication", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_worth_a_retry)
def plan(name: str, n: int = 10_000, seed: int = 0, expected_version: str | None = None,
         shard_size: int = SHARD_SIZE, fmt: str = "npz", virtual: bool = False) -> Plan:
    """Pin the champion of ``<name>-generator`` for a publication of ``n`` images. With
    ``expected_version``, refuse if the champion has moved meanwhile."""
    mlflow.set_tracking_uri(tracking_uri())
    mv = version_of(name, "champion")
    if expected_version is not None and str(mv.version) != expected_version:
        raise RuntimeError(f"{mv.name}: champion is version {mv.version}, not {expected_version}; "
                           "another run moved it, refusing to publish a stale version")
    swept = sweep_orphans(home() / "staging")  # shards of killed publications
    if swept:
        run_logger().info("removed %d staging folder(s) of publications killed earlier", len(swept))
    staging = home() / "staging" / f"{owner_tag()}{name}-{uuid.uuid4().hex[:12]}"
    snapshot, threshold = real_reference(mv)
    return Plan(name, mv.name, str(mv.version), n, seed, shard_size, str(staging),
                str(runtime.flow_run.id or ""), formats.check_format(fmt), virtual, snapshot.path, threshold)


def real_reference(mv) -> tuple[Snapshot, float]:
    """The snapshot a version was trained on and its near-copy threshold (the 1st percentile of
    holdout→train nearest pixel distances, as ``near_copy_share``). Publication runs where the
    real data is: without it, it is refused."""
    fingerprint = client().get_run(mv.run_id).data.params.get("snapshot", "")
    snap = snapshots.find(snapshot_root(), fingerprint) if fingerprint else None
    if snap is None:
        raise RuntimeError(f"{mv.name} v{mv.version}: its real data (snapshot {fingerprint[:16] or '?'}) is not under "
                           f"{snapshot_root()}: publication filters near copies against it, so it runs where the data is")
    train, _, holdout, _ = real_split(snap.load())
    return snap, float(np.percentile(nearest(pixels(holdout), pixels(train)), 1))


def shard_range(p: Plan, index: int) -> tuple[int, int]:
    return index * p.shard_size, min(p.n, (index + 1) * p.shard_size)


@task(name="sample shard", task_run_name="sample shard {index}")
def sample_shard(p: Plan, index: int) -> str:
    """Images ``[index·shard_size, …)`` of the publication: image i uses seed ``seed + i`` and
    the i-th label of the class-balanced mix, so any sharding gives the same dataset."""
    mlflow.set_tracking_uri(tracking_uri())  # also on a worker that did not inherit it
    images, labels = sample_publication(load_version(p.model, p.version), p.n, p.seed, *shard_range(p, index))
    near = nearest_images(images, Snapshot.at(p.snapshot).load()["images"]) < p.near_copy_threshold
    out = Path(p.staging) / f"shard-{index:06d}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, near=near, **({"labels": labels} if labels is not None else {}))
    os.replace(tmp, out)
    return str(out)


@task(name="commit publication", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_worth_a_retry)
def commit(p: Plan, shards: list[str]) -> str:
    """Join the shards into one new, immutable catalog version; returns its folder. The shards
    stay for a retry after an I/O failure (a later ``plan`` sweeps those of dead processes)."""
    logger = run_logger()
    try:
        parts = []
        for f in shards:
            with np.load(f, allow_pickle=False) as z:
                parts.append({k: z[k] for k in z.files})
        images = np.concatenate([q["images"] for q in parts])
        labels = np.concatenate([q["labels"] for q in parts]) if "labels" in parts[0] else None
        if len(images) != p.n:
            raise RuntimeError(f"{p.staging}: shards hold {len(images)} images, expected {p.n}")
        mlflow.set_tracking_uri(tracking_uri())
        G = load_version(p.model, p.version)
        near_copies = _replace(p, G, images, np.flatnonzero(np.concatenate([q["near"] for q in parts])))
        mv = client().get_model_version(p.model, p.version)
        counts = np.bincount(labels).tolist() if labels is not None else []
        manifest = {"format": p.format, "virtual": p.virtual, "shape": list(images.shape), "class_counts": counts,
                     "content_sha256": formats.content_sha256(images, labels), **lineage(mv),
                     "seed": p.seed, "noise": G.cfg.noise, "labels": "balanced: label of image i is i mod classes" if labels is not None else None,
                     "shards": len(shards), "prefect_flow_run_id": p.flow_run_id, "near_copies": near_copies}
        folder = catalog.publish(catalog_root(), p.name,
                                 lambda d: write_dataset(d, images, labels, p.format, p.virtual), manifest)
    except FINAL:
        shutil.rmtree(p.staging, ignore_errors=True)
        raise
    shutil.rmtree(p.staging, ignore_errors=True)
    logger.info("published %s%s version %s: %d images (%s) from %d shard(s) of %s v%s at %s; %d near cop%s replaced",
                "virtual " if p.virtual else "", p.name, folder.rsplit("/", 1)[-1], p.n, p.format, len(shards),
                p.model, p.version, folder, near_copies["replaced"], "y" if near_copies["replaced"] == 1 else "ies")
    return folder


def _replace(p: Plan, G, images: np.ndarray, flagged: np.ndarray) -> dict:
    """Replace the flagged near copies in ``images`` (in place) by samples of the next unused
    seeds; the manifest's ``near_copies`` record."""
    real = Snapshot.at(p.snapshot).load()["images"]
    too_near = lambda x: nearest_images(x, real) < p.near_copy_threshold
    replaced = replace_near_copies(G, p.n, p.seed, flagged.tolist(), too_near) if len(flagged) else {}
    for i in replaced:  # as a later materialisation samples them
        images[i] = sample_publication(G, p.n, p.seed, i, i + 1, replaced)[0][0]
    return {"threshold": p.near_copy_threshold, "replaced": len(replaced),
            "replacement_seeds": {str(i): s for i, s in replaced.items()},
            "rule": "an image nearer than the threshold (pixel L2, [0, 1] scale) to any real train or holdout image "
                    "is replaced by the sample of the next unused seed from seed + n upward (same label)"}
