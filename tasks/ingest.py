"""Ingest: read a source, validate it, cache a fingerprinted snapshot with its train/holdout split."""

from __future__ import annotations

from prefect import task

from snapshots import sources
from snapshots import store as snapshots
from snapshots.images import ImageOptions
from tasks.home import home, snapshot_root
from tasks.refs import Snapshot
from tasks.tracking import run_logger


@task(name="ingest", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=lambda task, run, state: _is_network_error(state))
def ingest(source: str = "digits", holdout: float = 0.2, split_seed: int = 0, min_classes: int = 0,
           options: ImageOptions = ImageOptions()) -> Snapshot:
    """Read ``source`` and return its snapshot; the same content is never written twice.
    ``min_classes`` (2 for a conditional run) is checked before anything is written; ``options``
    bring an image folder to one size and channel count."""
    logger = run_logger()
    source = sources.reveal(source)  # the CLI passes credentials around Prefect's parameters
    label = sources.redact(source)  # what is logged and recorded: no credentials from URLs
    root = snapshot_root()
    key = sources.content_key(source, options)
    cached = snapshots.lookup(root, key, holdout, split_seed)
    if cached is not None:
        _check_classes(label, cached.num_classes, min_classes)
        logger.info("source content unchanged (sha256 %s): skipping ingestion, reusing snapshot %s",
                    key[:16], cached.fingerprint[:16])
        return cached
    root.mkdir(parents=True, exist_ok=True)
    raw = sources.read(source, home() / "downloads", options, scratch=root)  # an image folder stays on disk
    try:
        _check_classes(label, len(set(raw.labels.tolist())) if raw.labels is not None else 0, min_classes)
    except sources.SourceError:
        if raw.file is not None:
            raw.file.unlink(missing_ok=True)
        raise
    for note in raw.notes:
        logger.warning("%s: %s", label, note)
    snap, created = snapshots.create(raw, label, root, holdout, split_seed)
    snapshots.remember(root, key, snap, holdout, split_seed)
    verb = "wrote" if created else "reusing cached"
    logger.info("%s snapshot %s: %d images %s, %d classes, %d train / %d holdout",
                verb, snap.fingerprint[:16], snap.num_images, snap.shape, snap.num_classes,
                snap.num_train, snap.num_holdout)
    return snap


def _check_classes(source: str, found: int, needed: int) -> None:
    if found < needed:
        raise sources.SourceError(f"source {source!r} has {found} class(es): a conditional run needs labels of "
                                  f"at least {needed} classes (use --no-conditional)")


def _is_network_error(state) -> bool:
    """Retry fetches that failed on the network, never bad content."""
    try:
        state.result()
    except sources.SourceError as exc:
        return "cannot fetch" in str(exc) or ": HTTP 5" in str(exc)
    except Exception:
        return False
    return False
