"""Publication as a fan-out: pin the champion, sample shards as mapped tasks, commit once.

Shards run on the flow's task runner: threads by default, a Dask cluster when
``GANVIRT_TASK_RUNNER=dask`` (``GANVIRT_DASK_ADDRESS`` names a running scheduler, e.g.
``tcp://dask-scheduler:8786``; empty starts a local cluster). Workers must share
``GANVIRT_HOME`` (the staging folder) and reach the MLflow tracking server.
"""

from __future__ import annotations

import os

from prefect import unmapped

from tasks import publish as publishing
from tasks.publish import commit, plan, sample_shard


def task_runner():
    """The task runner the settings ask for; None keeps Prefect's default thread pool."""
    kind = os.environ.get("GANVIRT_TASK_RUNNER", "threads").strip().lower()
    if kind in ("", "threads"):
        return None
    if kind != "dask":
        raise ValueError(f"GANVIRT_TASK_RUNNER={kind!r}: expected 'threads' or 'dask'")
    from prefect_dask import DaskTaskRunner  # optional: pip install 'ganvirt[scale]'

    address = os.environ.get("GANVIRT_DASK_ADDRESS", "").strip()
    return DaskTaskRunner(address=address) if address else DaskTaskRunner()


def publish_dataset(name: str, n: int, seed: int = 0, expected_version: str | None = None,
                    shard_size: int | None = None, fmt: str = "npz", virtual: bool = False) -> str:
    """Publish ``n`` images of ``<name>-generator@champion`` as a new version (in format ``fmt``,
    or as a virtual manifest); returns its location."""
    p = plan(name, n, seed, expected_version, shard_size or publishing.SHARD_SIZE, fmt, virtual)
    shards = sample_shard.map(unmapped(p), p.shards)
    return commit(p, shards.result())
