"""The embedded stores of one command, made ready while the flow's modules import.

In the embedded default, MLflow is a SQLite store and Prefect runs in its own ephemeral mode (a
temporary server for the life of the process, started by Prefect on first use). Both are made
ready in a worker thread, side by side, while the calling thread imports torch, MLflow and the
flows: MLflow's schema is created or migrated through its public client, and Prefect's
temporary server is started by asking it for its health. A home's first preparation of each
store happens once, under a lock: concurrent first runs would otherwise race to create the same
tables. Against servers there is nothing to prepare.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

from tasks.home import home, tracking_uri
from tasks.locks import first_time


def prefect_mark() -> Path:
    """Written once Prefect's database in ``PREFECT_HOME`` is migrated for this Prefect version."""
    prefect_home = Path(os.environ.get("PREFECT_HOME", home() / "prefect"))
    return prefect_home / f".stores-prefect-{version('prefect')}"


def mlflow_mark() -> Path:
    return home() / f".stores-mlflow-{version('mlflow')}"


def init_mlflow() -> None:
    """Create or migrate the SQLite tracking store's schema (any first call through the client
    does; this one reads at most one experiment)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri()).search_experiments(max_results=1)


def start_prefect() -> None:
    """Start this process's ephemeral Prefect server (it migrates its database); the flow run
    that follows reuses it. With an API URL configured, this checks that server instead."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
    if failure is not None:
        raise RuntimeError(f"Prefect API at {client.api_url} is not healthy: {failure}")


def prepare_prefect() -> None:
    """Prefect's temporary server up (a home's first migration under a lock)."""
    first_time("stores-prefect", prefect_mark(), start_prefect, always=True)


def prepare_mlflow() -> None:
    """MLflow's SQLite schema created or migrated, once per home; nothing against a server."""
    if tracking_uri().startswith("sqlite:"):
        first_time("stores", mlflow_mark(), init_mlflow)


def describe() -> str:
    """Where this command's runs and metrics go, in a line for the console."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    prefect = (f"Prefect API {url} (from your Prefect configuration)" if url else
               f"Prefect in ephemeral mode (nothing configured): a temporary server over {os.environ.get('PREFECT_HOME')}")
    return f"{prefect}; MLflow at {tracking_uri()}"


def prepare_in_background() -> Callable[[], None]:
    """Both stores made ready in worker threads while the caller imports torch, MLflow and the
    flows. Returns ``wait()``: call it before the flow (it raises what either job raised)."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="ganvirt-stores")
    # each library imported here, in the calling thread, before its worker starts: the two
    # threads never import the same modules at once
    import prefect.client.orchestration  # noqa: F401

    jobs = [pool.submit(prepare_prefect)]  # the longer one (about 10 s on a fresh home) first
    import mlflow.tracking  # noqa: F401

    jobs.append(pool.submit(prepare_mlflow))
    pool.shutdown(wait=False)

    def wait() -> None:
        for job in jobs:
            job.result()

    return wait
