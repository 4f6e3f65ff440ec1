"""Where things live: everything the embedded default writes sits under ``GANVIRT_HOME``.

``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL`` and ``GANVIRT_CATALOG_URL`` override the defaults
when set; with nothing set no server is needed (SQLite MLflow store, ephemeral Prefect).
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
    url = os.environ.get("GANVIRT_CATALOG_URL", "").strip()
    if url:
        from catalog.store import default_root

        return default_root()
    return str(home() / "catalog")


def snapshot_root() -> Path:
    return home() / "snapshots"


def check_name(name: str) -> str:
    """A dataset name is also a folder, an experiment and a model name: keep it plain (one rule
    everywhere: the catalog's; raises a ValueError naming the value)."""
    from catalog.store import check_name as catalog_check_name

    return catalog_check_name(name)


def configure_environment() -> None:
    """Defaults for Prefect and MLflow before either is imported: home-local state, no telemetry.

    Only sets what the user has not set.
    """
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"  # one per process: concurrent runs share a home
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"GANVIRT_HOME={root}: not writable ({exc.strerror})") from None
    defaults = {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": tracking_uri(),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
