"""ganvirt follows the shop's own Prefect configuration: a run goes to the server that the
user's active profile or a ``prefect.toml`` names, and to Prefect's ephemeral mode under
``GANVIRT_HOME`` when nothing is configured; the console says which."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_services import call, free_port, wait_for

pytestmark = pytest.mark.slow

OPEN_GATES = [f"--gate={k}" for k in ("max_fid_ratio=1e9", "max_kid=1e12", "min_precision=0", "min_recall=0",
                                      "min_tstr_accuracy=0", "min_tstr_ratio=0", "max_dcr_share=1", "max_near_copy_share=1", "max_mia_auc=1")]
TINY = ["--steps", "30", "--batch-size", "32", "--eval-samples", "100", "--classifier-steps", "10", "-n", "20"]


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory):
    """The shop's own Prefect server on 127.0.0.1, with its own home and database."""
    home = tmp_path_factory.mktemp("shop-prefect")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: call(f"{api}/health"), 180, "the shop's Prefect server")
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def ganvirt_run(tmp_path: Path, name: str, user_home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI"))}
    env |= {"HOME": str(user_home), "GANVIRT_HOME": str(tmp_path / "ganvirt")}
    out = subprocess.run([str(Path(sys.executable).with_name("ganvirt")), "run", "--name", name, *TINY, *OPEN_GATES],
                         env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def runs_named(api: str, name: str) -> list[dict]:
    return [r for r in call(f"{api}/flow_runs/filter", {}) if r["name"].startswith(f"{name} ·")]


def test_the_active_profile_names_the_server(tmp_path, shop_server):
    user = tmp_path / "user"
    (user / ".prefect").mkdir(parents=True)
    (user / ".prefect" / "profiles.toml").write_text(
        f'active = "shop"\n\n[profiles.shop]\nPREFECT_API_URL = "{shop_server}"\n\n[profiles.ephemeral]\n')
    out = ganvirt_run(tmp_path, "by-profile", user, tmp_path)
    assert f"Prefect API {shop_server} (from your Prefect configuration)" in out.stdout
    assert [r["state_type"] for r in runs_named(shop_server, "by-profile")] == ["COMPLETED"]


def test_a_prefect_toml_names_the_server(tmp_path, shop_server):
    user, project = tmp_path / "user", tmp_path / "project"
    user.mkdir()
    project.mkdir()
    (project / "prefect.toml").write_text(f'[api]\nurl = "{shop_server}"\n')
    out = ganvirt_run(tmp_path, "by-toml", user, project)
    assert f"Prefect API {shop_server}" in out.stdout
    assert [r["state_type"] for r in runs_named(shop_server, "by-toml")] == ["COMPLETED"]


def test_nothing_configured_is_the_embedded_default(tmp_path, shop_server):
    user = tmp_path / "user"
    user.mkdir()
    out = ganvirt_run(tmp_path, "embedded", user, tmp_path)
    assert "Prefect in ephemeral mode (nothing configured)" in out.stdout
    assert runs_named(shop_server, "embedded") == []
    assert (tmp_path / "ganvirt" / "prefect" / "prefect.db").is_file() and not (user / ".prefect").exists()
