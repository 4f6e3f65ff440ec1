"""Where the tasks' I/O goes: everything the embedded default writes sits under ``GANVIRT_HOME``.

``MLFLOW_TRACKING_URI`` and ``GANVIRT_CATALOG_URL`` override the defaults when set; with nothing
set, MLflow is a SQLite store and the catalog a folder, both under the home.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The ganvirt home folder (``GANVIRT_HOME``, default ``./.ganvirt``), absolute."""
    return Path(os.environ.get("GANVIRT_HOME", ".ganvirt")).expanduser().resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def catalog_root() -> str:
    """Where datasets are published: ``GANVIRT_CATALOG_URL`` (a folder or any fsspec URL, e.g.
    ``s3://bucket/prefix``), else ``<GANVIRT_HOME>/catalog``."""
    from catalog.store import default_root

    return default_root()


def snapshot_root() -> Path:
    return home() / "snapshots"
