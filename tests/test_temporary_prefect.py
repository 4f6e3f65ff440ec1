"""The temporary Prefect server that ``ganvirt run`` starts before importing Prefect: a real
server on a fresh home (migrated once, reachable through ``PREFECT_API_URL``, stopped with the
environment restored), a clear error when it cannot start, and no early server where Prefect
itself must decide (an API URL in the environment or the profile, Prefect already imported)."""

import os
import subprocess
import sys
import textwrap

import pytest

START = textwrap.dedent("""
    import json, os, sys, urllib.request
    from ganvirt import settings
    settings.configure_environment()
    from ganvirt.services import TemporaryPrefect
    assert TemporaryPrefect.wanted() and "prefect" not in sys.modules
    server = TemporaryPrefect()
    try:
        url = server.wait()
    except RuntimeError as exc:
        print("ERROR", exc)
        raise SystemExit(3)
    assert os.environ["PREFECT_API_URL"] == url and os.environ["PREFECT_UI_URL"] == ""
    with urllib.request.urlopen(url + "/health", timeout=5) as r:
        healthy = r.status == 200
    proc = server.services.procs[server.NAME]
    server.stop()
    print(json.dumps({"healthy": healthy, "exit": proc.poll(), "env": "PREFECT_API_URL" in os.environ,
                      "ui": "PREFECT_UI_URL" in os.environ}))
""")


def run(code: str, home, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI"))}
    return subprocess.run([sys.executable, "-c", code], env={**base, "GANVIRT_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=180)


def test_starts_migrates_once_and_stops(tmp_path):
    home = tmp_path / "home"
    for _ in range(2):  # fresh database (migrated under the lock, then marked), then reused
        out = run(START, home)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip().splitlines()[-1] == '{"healthy": true, "exit": -15, "env": false, "ui": false}'
    assert [p.name for p in (home / "prefect").glob(".stores-prefect-*")]
    assert (home / "logs" / "prefect-temporary-server.log").exists()


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    (home / "prefect").mkdir(parents=True)
    (home / "prefect" / "prefect.db").mkdir()  # a folder where the database file should be
    out = run(START, home)
    assert out.returncode == 3, out.stdout + out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR Prefect temporary server exited with code ") and "prefect-temporary-server.log" in line
    assert not list((home / "prefect").glob(".stores-prefect-*"))  # not marked as migrated


@pytest.mark.parametrize("env, profile", [({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, None),
                                          ({}, '[profiles.ephemeral]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'),
                                          ({"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"}, None)])
def test_not_wanted_where_prefect_decides(tmp_path, env, profile):
    home = tmp_path / "home"
    if profile is not None:
        (home / "prefect").mkdir(parents=True)
        (home / "prefect" / "profiles.toml").write_text(profile)
    code = ("from ganvirt import settings; settings.configure_environment()\n"
            "from ganvirt.services import TemporaryPrefect; print(TemporaryPrefect.wanted())")
    out = run(code, home, **env)
    assert out.stdout.strip() == "False", out.stderr
    assert run(code, home).stdout.strip() == ("False" if profile else "True")


def test_not_wanted_once_prefect_is_imported():
    import prefect  # noqa: F401  (its settings are read on import: too late to point it elsewhere)

    from ganvirt.services import TemporaryPrefect

    assert not TemporaryPrefect.wanted()
