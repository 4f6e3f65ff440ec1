"""Cross-process locks over one ``GANVIRT_HOME``: concurrent ``ganvirt`` processes on one
machine (or on one shared POSIX file system) take turns where turns matter.

- ``stores``: the first use of the embedded stores (MLflow's SQLite schema, Prefect's database
  migrations) happens once; every later process skips the lock.
- ``name:<dataset>``: moving a dataset's ``champion`` and publishing from it is one step, so the
  newest catalog version always comes from the champion at the time it was published.
- ``extractor:<folder>``: a snapshot's feature extractor is trained and registered once.

Locks are advisory ``flock`` locks on files under ``GANVIRT_HOME/locks``; the kernel drops them
when the holder dies, so a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganvirt import settings


def lock_path(key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
    return settings.home() / "locks" / f"{safe}.lock"


@contextmanager
def held(key: str, log=None) -> Iterator[None]:
    """Hold the exclusive lock ``key`` for the block (waits for it; ``log`` is told once when
    another process holds it)."""
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None:
                log(f"waiting for another ganvirt process ({key})")
            start = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            if log is not None:
                log(f"got {key} after {time.monotonic() - start:.1f} s")
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def prepare_stores() -> None:
    """Create or migrate the embedded stores once, under the ``stores`` lock: MLflow's SQLite
    schema and, in Prefect's ephemeral mode, its database. Concurrent first runs on a fresh home
    would otherwise race to create the same tables. No-op for servers and for stores already
    prepared by these versions of MLflow and Prefect."""
    from importlib.metadata import version

    marks = []
    uri = settings.tracking_uri()
    if uri.startswith("sqlite:"):
        marks.append(("mlflow", settings.home() / f".stores-mlflow-{version('mlflow')}", _init_mlflow))
    if not os.environ.get("PREFECT_API_URL"):
        prefect_home = Path(os.environ.get("PREFECT_HOME", settings.home() / "prefect"))
        marks.append(("prefect", prefect_home / f".stores-prefect-{version('prefect')}", _start_prefect))
    todo = [m for m in marks if not m[1].exists()]
    if not todo:
        return
    with held("stores"):
        for _, mark, init in todo:
            if not mark.exists():
                init()
                mark.parent.mkdir(parents=True, exist_ok=True)
                mark.write_text("prepared\n")


def _init_mlflow() -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(settings.tracking_uri(), settings.artifact_root().as_uri())


def _start_prefect() -> None:
    """Start this process's ephemeral Prefect server (it migrates the database); the flow run
    that follows reuses the running server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        failure = c.api_healthcheck()
    if failure is not None:
        raise RuntimeError(f"Prefect's ephemeral server did not start: {failure}")
