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


def prepare_stores() -> None:
    """Make the embedded stores ready for a flow: create or migrate MLflow's SQLite schema and,
    in Prefect's ephemeral mode, start this process's temporary server (which migrates its
    database). The first preparation of a home happens once, under the ``stores`` lock:
    concurrent first runs on a fresh home would otherwise race to create the same tables.
    Nothing to do against servers."""
    from importlib.metadata import version

    marks = []
    if settings.tracking_uri().startswith("sqlite:"):
        marks.append((_mlflow_mark(), _init_mlflow))
    if not os.environ.get("PREFECT_API_URL"):
        prefect_home = Path(os.environ.get("PREFECT_HOME", settings.home() / "prefect"))
        marks.append((prefect_home / f".stores-prefect-{version('prefect')}", _start_prefect))
    if any(not mark.exists() for mark, _ in marks):
        with held("stores"):
            todo = [(mark, init) for mark, init in marks if not mark.exists()]
            # side by side: Prefect migrates in its server's process, MLflow in this one
            with ThreadPoolExecutor(len(todo) or 1) as pool:
                for future in [pool.submit(init) for _, init in todo]:
                    future.result()
            for mark, _ in todo:
                mark.parent.mkdir(parents=True, exist_ok=True)
                mark.write_text("prepared\n")
    if marks and marks[-1][1] is _start_prefect and not _server_started:
        _start_prefect()  # the flow run reuses it: started here, it overlaps the caller's imports


def prepare_stores_in_background() -> Future:
    """``prepare_stores`` in a worker thread: the temporary Prefect server (a subprocess)
    starts while the caller imports torch, MLflow and the flows. ``.result()`` before the flow."""
    # imported here, so that the worker thread imports nothing that the caller imports too
    import prefect.client.orchestration  # noqa: F401

    if settings.tracking_uri().startswith("sqlite:") and not _mlflow_mark().exists():
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a fresh home: the worker creates the schema)

    pool = ThreadPoolExecutor(1, thread_name_prefix="ganvirt-stores")
    future = pool.submit(prepare_stores)
    pool.shutdown(wait=False)
    return future


def _mlflow_mark() -> Path:
    from importlib.metadata import version

    return settings.home() / f".stores-mlflow-{version('mlflow')}"


def _init_mlflow() -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(settings.tracking_uri(), settings.artifact_root().as_uri())


_server_started = False


def _start_prefect() -> None:
    """Start this process's ephemeral Prefect server (it migrates the database); the flow run
    that follows reuses the running server."""
    global _server_started
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        failure = c.api_healthcheck()
    if failure is not None:
        raise RuntimeError(f"Prefect's ephemeral server did not start: {failure}")
    _server_started = True
