"""Cross-process locks over one ``GANVIRT_HOME``: concurrent ``ganvirt`` processes on one
machine (or on one shared POSIX file system) take turns where turns matter.

- ``stores`` and ``stores-prefect``: the first use of the embedded stores (MLflow's SQLite
  schema, Prefect's database migrations) happens once; every later process skips the lock.
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
from concurrent.futures import Future, ThreadPoolExecutor
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


def prepare_stores(server=None) -> None:
    """Make the embedded stores ready for a flow, side by side: create or migrate MLflow's
    SQLite schema (in this process) and get Prefect's temporary server up (it migrates its
    database in its own process): ``server`` is a :class:`ganvirt.services.TemporaryPrefect`
    already starting; without one, in ephemeral mode, Prefect's own temporary server starts
    here and the flow run reuses it. A home's first preparation of each store happens once,
    under a lock: concurrent first runs would otherwise race to create the same tables.
    Nothing to do against servers."""
    jobs = []
    if settings.tracking_uri().startswith("sqlite:"):
        jobs.append(lambda: first_time("stores", _mlflow_mark(), _init_mlflow))
    if server is not None:
        jobs.append(server.wait)
    elif not os.environ.get("PREFECT_API_URL") and not _server_started:
        jobs.append(_start_prefect)
    with ThreadPoolExecutor(len(jobs) or 1) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def first_time(key: str, mark: Path, init, always: bool = False) -> None:
    """``init()`` under the lock ``key`` until ``mark`` exists (then write it); with ``always``,
    ``init()`` also runs, without the lock, once the mark is there."""
    if mark.exists():
        if always:
            init()
        return
    with held(key):
        init()
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text("prepared\n")


def prepare_stores_in_background(server=None) -> Future:
    """``prepare_stores`` in a worker thread: the stores get ready while the caller imports
    torch, MLflow and the flows. ``.result()`` before the flow."""
    # imported here, so that the worker thread imports nothing that the caller imports too
    import prefect.client.orchestration  # noqa: F401

    if settings.tracking_uri().startswith("sqlite:") and not _mlflow_mark().exists():
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a fresh home: the worker creates the schema)

    pool = ThreadPoolExecutor(1, thread_name_prefix="ganvirt-stores")
    future = pool.submit(prepare_stores, server)
    pool.shutdown(wait=False)
    return future


def prefect_mark() -> Path:
    """Written once Prefect's database in ``PREFECT_HOME`` is migrated for this Prefect version."""
    from importlib.metadata import version

    prefect_home = Path(os.environ.get("PREFECT_HOME", settings.home() / "prefect"))
    return prefect_home / f".stores-prefect-{version('prefect')}"


def _mlflow_mark() -> Path:
    from importlib.metadata import version

    return settings.home() / f".stores-mlflow-{version('mlflow')}"


def _init_mlflow() -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(settings.tracking_uri(), settings.artifact_root().as_uri())


_server_started = False


def _start_prefect() -> None:
    """Start this process's ephemeral Prefect server (it migrates the database; the first time
    under the ``stores-prefect`` lock); the flow run that follows reuses the running server."""
    global _server_started
    from prefect.client.orchestration import get_client

    def start() -> None:
        with get_client(sync_client=True) as c:
            failure = c.api_healthcheck()
        if failure is not None:
            raise RuntimeError(f"Prefect's ephemeral server did not start: {failure}")

    first_time("stores-prefect", prefect_mark(), start, always=True)
    _server_started = True
