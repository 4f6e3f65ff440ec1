"""Load: eight concurrent ``ganvirt run`` processes on two dataset names against one fresh
``GANVIRT_HOME`` (embedded SQLite MLflow, ephemeral Prefect). Every run finishes; every published
version verifies; the registry's versions and aliases agree with the catalog; the stores pass
SQLite's integrity check; no work folder is left behind."""

import sqlite3
import subprocess
import sys
import time

import pytest

import catalog
from tests.test_crash import OPEN, env_for, registry_detail

pytestmark = pytest.mark.slow

RUNS, NAMES = 8, ("load-a", "load-b")


def test_eight_concurrent_runs_on_two_names(tmp_path):
    home = tmp_path / "home"
    start = time.monotonic()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "ganvirt.cli", "run", "--source", "digits", "--name", NAMES[i % 2], "--seed", str(i),
         "--steps", "60", "--eval-samples", "300", "--classifier-steps", "60", "-n", "200", *OPEN],
        env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(RUNS)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    wall = time.monotonic() - start
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    print(f"\n{RUNS} concurrent runs on {len(NAMES)} names: {wall:.0f} s wall")

    root = home / "catalog"
    reg = registry_detail(home)
    for name in NAMES:
        versions = catalog.versions_of(root, name)
        assert versions == [1, 2, 3, 4]
        generator = reg[f"{name}-generator"]
        assert sorted(generator["versions"], key=int) == ["1", "2", "3", "4"]
        assert all(tags["gates"] == "passed" and "fid_like" in tags for tags in generator["versions"].values())
        used = []
        for v in versions:
            m = catalog.verify(catalog.resolve(root, name, v))  # every file's sha256
            assert m["generator"]["model"] == f"{name}-generator"
            used.append(m["generator"]["version"])
        # champion moves and publications never interleave: version k of the data comes from
        # generator version k, and the newest data from the current champion
        assert used == ["1", "2", "3", "4"]
        assert generator["aliases"]["champion"] == used[-1]
        assert generator["aliases"]["candidate"] in generator["versions"]
        # the snapshot's extractor was trained and registered once per name, not once per run
        assert list(reg[f"{name}-features"]["versions"]) == ["1"]
    for db in (home / "mlflow.db", home / "prefect" / "prefect.db"):
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not any((home / "staging").iterdir())
    assert not [p for p in root.rglob(".tmp-*")]
