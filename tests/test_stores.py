"""The embedded stores of one command (``ganvirt.stores``): on a fresh home MLflow's schema is
created and Prefect's own ephemeral server starts and migrates its database, each once under a
lock and marked; a later process reuses both; a server that cannot start is a clear error and
leaves no mark."""

import os
import subprocess
import sys
import textwrap

PREPARE = textwrap.dedent("""
    import sys
    from ganvirt import settings
    settings.configure_environment()
    from ganvirt import stores
    try:
        stores.prepare_in_background()()
    except Exception as exc:
        print("ERROR", str(exc).splitlines()[0])
        raise SystemExit(3)
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as c:
        print("prefect", c.api_healthcheck() is None, "ephemeral" in str(c.api_url) or "127.0.0.1" in str(c.api_url))
    print("mlflow", [e.name for e in MlflowClient().search_experiments()])
""")


def run(home, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI"))}
    return subprocess.run([sys.executable, "-c", PREPARE], env={**base, "GANVIRT_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=240)


def test_fresh_home_then_reuse(tmp_path):
    home = tmp_path / "home"
    for _ in range(2):  # fresh databases (prepared under the locks, then marked), then reused
        out = run(home)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.strip().splitlines()
        assert "prefect True True" in lines and "mlflow ['Default']" in lines, out.stdout
    assert list((home / "prefect").glob(".stores-prefect-*")) and list(home.glob(".stores-mlflow-*"))
    assert (home / "mlflow.db").stat().st_size > 0


def test_a_prefect_server_that_cannot_start_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    (home / "prefect").mkdir(parents=True)
    (home / "prefect" / "prefect.db").mkdir()  # a folder where the database file should be
    out = run(home, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="20")  # Prefect waits this long
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("ERROR "), out.stdout
    assert not list((home / "prefect").glob(".stores-prefect-*"))  # not marked as migrated
