"""The front door's settings: where things live (``GANVIRT_HOME`` and its overrides, read by
``tasks.home``) and the environment Prefect and MLflow start with.

``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL`` and ``GANVIRT_CATALOG_URL`` override the defaults
when set; with nothing set no server is needed (SQLite MLflow store, ephemeral Prefect).
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.home import artifact_root, catalog_root, home, snapshot_root, tracking_uri

__all__ = ["artifact_root", "catalog_root", "configure_environment", "home", "snapshot_root", "tracking_uri"]


def user_prefect_profiles() -> Path:
    """The user's own Prefect profiles file, where Prefect itself would look for it."""
    if os.environ.get("PREFECT_PROFILES_PATH"):
        return Path(os.environ["PREFECT_PROFILES_PATH"]).expanduser()
    return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser() / "profiles.toml"


def configure_environment() -> None:
    """Defaults for Prefect and MLflow before either is imported: home-local state, no telemetry.

    Only sets what the user has not set. The user's Prefect configuration keeps deciding where
    runs go: their active profile (its file stays in use, though Prefect's local state moves
    under ``GANVIRT_HOME``), a ``prefect.toml``, ``.env`` or ``PREFECT_API_URL``; with none of
    them naming a server, Prefect runs in its ephemeral mode.
    """
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"  # one per process: concurrent runs share a home
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"GANVIRT_HOME={root}: not writable ({exc.strerror})") from None
    profiles = user_prefect_profiles()
    if profiles.is_file():  # the user's own Prefect profiles (their server, or Prefect Cloud) still count
        os.environ.setdefault("PREFECT_PROFILES_PATH", str(profiles))
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
