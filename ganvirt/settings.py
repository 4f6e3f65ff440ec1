"""The front door's settings: where things live (``GANVIRT_HOME`` and its overrides, read by
``tasks.home``) and the environment Prefect and MLflow start with.

``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL`` and ``GANVIRT_CATALOG_URL`` override the defaults
when set; with nothing set no server is needed (SQLite MLflow store, ephemeral Prefect).
"""

from __future__ import annotations

import os

from tasks.home import artifact_root, catalog_root, home, snapshot_root, tracking_uri

__all__ = ["artifact_root", "catalog_root", "configure_environment", "home", "snapshot_root", "tracking_uri"]


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
