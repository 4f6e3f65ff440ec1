"""Test isolation: one throw-away GANVIRT_HOME per session, set before Prefect or MLflow load."""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="ganvirt-test-"))
os.environ["GANVIRT_HOME"] = str(_HOME)
for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "GANVIRT_CATALOG_URL"):
    os.environ.pop(key, None)

from ganvirt import settings  # noqa: E402

settings.configure_environment()

REPO = Path(__file__).resolve().parents[1]
# The real MNIST test split (not in the repo): GANVIRT_MNIST, else ../shared/data/mnist beside
# the checkout, else this workplace's shared folder (for clones made elsewhere, e.g. by CI).
MNIST = next((p for p in (Path(os.environ.get("GANVIRT_MNIST", "")), REPO.parent / "shared" / "data" / "mnist",
                          Path("/work/shared/data/mnist")) if str(p) != "." and p.is_dir()),
             REPO.parent / "shared" / "data" / "mnist")


@pytest.fixture(scope="session")
def home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def prefect_server():
    """A real temporary Prefect server (and database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def digits_snapshot():
    """The digits snapshot, created once under the session home."""
    from snapshots import sources
    from snapshots import store as snapshots

    snap, _ = snapshots.create(sources.read_digits(), "digits", settings.snapshot_root())
    return snap


def open_gates(**overrides):
    """A policy every candidate passes, with some thresholds set back to real values."""
    from tasks.gates import GatePolicy

    wide = dict(max_fid_ratio=1e9, max_kid=1e12, min_precision=0, min_recall=0, min_tstr_accuracy=0, min_tstr_ratio=0,
                max_dcr_share=1, max_near_copy_share=1, max_mia_auc=1)
    return GatePolicy(**{**wide, **overrides})


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def grid_steps(run_id: str) -> list[int]:
    """The steps of a run's sample grids: images logged under the key ``samples`` (MLflow names
    them ``images/samples<sep>step<sep><step><sep>…``; the separator differs between versions)."""
    import re

    from tasks.tracking import client

    found = (re.match(r"images/samples([%+])step\1(\d+)\1.*\.png$", f.path)
             for f in client().list_artifacts(run_id, "images"))
    return sorted(int(m.group(2)) for m in found if m)
