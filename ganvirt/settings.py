"""Where things live: everything the embedded default writes sits under ``GANVIRT_HOME``.

``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL`` and ``GANVIRT_CATALOG_URL`` override the defaults
when set; with nothing set no server is needed (SQLite MLflow store, ephemeral Prefect).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def home() -> Path:
    """The ganvirt home folder (``GANVIRT_HOME``, default ``./.ganvirt``), absolute."""
    return Path(os.environ.get("GANVIRT_HOME", ".ganvirt")).expanduser().resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def catalog_root() -> Path:
    url = os.environ.get("GANVIRT_CATALOG_URL")
    if url and "://" in url and not url.startswith("file://"):
        raise ValueError(f"GANVIRT_CATALOG_URL={url!r}: only local folders are supported so far")
    return Path(url.removeprefix("file://")).resolve() if url else home() / "catalog"


def snapshot_root() -> Path:
    return home() / "snapshots"


def check_name(name: str) -> str:
    """A dataset name is also a folder, an experiment and a model name: keep it plain."""
    if not NAME_RE.match(name or ""):
        raise ValueError(f"dataset name {name!r}: expected lowercase letters, digits, '-' or '_' "
                         "(at most 63, starting with a letter or digit)")
    return name


def configure_environment() -> None:
    """Defaults for Prefect and MLflow before either is imported: home-local state, no telemetry.

    Only sets what the user has not set.
    """
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-probe"
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
