"""Crash points: a real ``ganvirt`` process killed with SIGKILL, then run again.

- during training: the rerun resumes from the last checkpoint and ends with the same weights
  as an uninterrupted run (CPU, same seed);
- during evaluation: no new model version, so no ``champion`` on an unevaluated one;
- during publication: no partial version is visible, and the rerun publishes a complete one;
- after every kill the MLflow SQLite store and the catalog stay readable.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import catalog

pytestmark = pytest.mark.slow

OPEN = ["--gate", "max_fid_ratio=1e9", "--gate", "max_kid=1e12", "--gate", "min_precision=0", "--gate", "min_recall=0",
        "--gate", "min_tstr_accuracy=0", "--gate", "min_tstr_ratio=0", "--gate", "max_dcr_share=1", "--gate", "max_near_copy_share=1",
        "--gate", "max_mia_auc=1"]
RUN = ["run", "--source", "digits", "--name", "crash", "--steps", "2000", "--checkpoint-every", "200",
       "-n", "200", *OPEN]


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME")}
    return env | {"GANVIRT_HOME": str(home)}


def ganvirt(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganvirt.cli", *args], env=env_for(home), capture_output=True,
                          text=True, timeout=timeout)


def kill_when(home: Path, args: list[str], ready, timeout: float = 600) -> None:
    """Start ``ganvirt args``, SIGKILL it as soon as ``ready()`` holds."""
    proc = subprocess.Popen([sys.executable, "-m", "ganvirt.cli", *args], env=env_for(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the process ended before the crash point"
            assert time.monotonic() < deadline, "the crash point was never reached"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process and its children (Prefect's server)
        proc.wait()


def resume_step(home: Path) -> int:
    states = list((home / "checkpoints").glob("resume-*/state.pt"))
    if not states:
        return -1
    try:
        return torch.load(states[0], weights_only=True)["step"]
    except Exception:  # being written right now
        return -1


def final_weights(home: Path) -> dict:
    (path,) = [p for p in (home / "checkpoints").glob("*/generator.pt")]
    return torch.load(path, weights_only=True)["ema"]


def registry(home: Path):
    code = ("import mlflow, json; from ganvirt import settings; mlflow.set_tracking_uri(settings.tracking_uri());"
            "c = mlflow.MlflowClient(); print(json.dumps(sorted([(m.name, str(v.version), sorted("
            "a for a, n in m.aliases.items() if str(n) == str(v.version))) for m in c.search_registered_models()"
            " for v in c.search_model_versions(f\"name='{m.name}'\")])))")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(home), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]  # the SQLite store opens and answers
    return json.loads(out.stdout.strip().splitlines()[-1])


def registry_detail(home: Path) -> dict:
    """{model name: {"versions": {version: tags}, "aliases": {alias: version}}} read in a fresh process."""
    code = ("import mlflow, json; from ganvirt import settings; c = mlflow.MlflowClient(settings.tracking_uri());"
            "print(json.dumps({m.name: {'aliases': {a: str(v) for a, v in m.aliases.items()}, 'versions': "
            "{str(v.version): v.tags for v in c.search_model_versions(f\"name='{m.name}'\")}} "
            "for m in c.search_registered_models()}))")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(home), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kill_during_training_then_resume_equals_uninterrupted(tmp_path):
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    kill_when(crashed, RUN, lambda: resume_step(crashed) >= 400)
    assert registry(crashed) == [] and catalog.names(crashed / "catalog") == []
    out = ganvirt(crashed, *RUN)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming run" in out.stderr + out.stdout
    out = ganvirt(clean, *RUN)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = final_weights(crashed), final_weights(clean)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_during_evaluation_registers_nothing(tmp_path):
    home = tmp_path / "home"
    kill_when(home, [*RUN[:6], "600", *RUN[7:]], lambda: any((home / "checkpoints").glob("*/generator.pt")))
    assert all("champion" not in aliases for _, _, aliases in registry(home))
    assert [name for name, _, _ in registry(home) if name.endswith("-generator")] == []
    out = ganvirt(home, *RUN[:6], "600", *RUN[7:])
    assert out.returncode == 0, out.stderr[-3000:]
    assert ("crash-generator", "1", ["candidate", "champion"]) in [tuple(r) for r in registry(home)]


def test_kill_during_registration_leaves_no_champion_on_an_unregistered_model(tmp_path):
    """Killed once the generator's MLflow model files are written, before or while it is
    registered and its aliases move: every alias names a registered, evaluated version, and the
    rerun registers and publishes a complete one."""
    home = tmp_path / "home"
    args = [*RUN[:6], "300", *RUN[7:]]
    kill_when(home, args, lambda: any((home / "mlartifacts").rglob("generator_model.py")))
    for model, info in registry_detail(home).items():  # every alias names an evaluated version
        for alias, version in info["aliases"].items():
            assert "fid_like" in info["versions"][version], (model, alias, version)
            assert alias != "champion" or info["versions"][version]["gates"] == "passed"
    assert catalog.names(home / "catalog") == []
    out = ganvirt(home, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [tuple(r) for r in registry(home) if r[0] == "crash-generator"]
    champion = [v for _, v, aliases in rows if "champion" in aliases]
    assert len(champion) == 1
    m = catalog.verify(catalog.resolve(home / "catalog", "crash", 1))
    assert m["generator"]["version"] == champion[0]


def test_kill_during_publication_leaves_no_partial_version(tmp_path):
    home = tmp_path / "home"
    out = ganvirt(home, *RUN[:6], "300", *RUN[7:])
    assert out.returncode == 0, out.stderr[-3000:]
    root = home / "catalog"
    assert catalog.versions_of(root, "crash") == [1]
    staging = home / "staging"
    # a large publication: killed while its shards are being written
    kill_when(home, ["publish", "crash", "-n", "400000"], lambda: staging.is_dir() and any(staging.rglob("shard-*.npz")))
    assert catalog.versions_of(root, "crash") == [1] and catalog.verify(catalog.resolve(root, "crash", 1))
    out = ganvirt(home, "publish", "crash", "-n", "500")
    assert out.returncode == 0, out.stderr[-3000:]
    assert catalog.versions_of(root, "crash") == [1, 2]
    assert catalog.verify(catalog.resolve(root, "crash", 2))["shape"][0] == 500
    assert registry(home)  # still readable
    assert not any(staging.iterdir())  # the killed publication's shards were swept by the rerun


def test_sigterm_stops_the_temporary_prefect_server_with_the_run(tmp_path):
    """SIGTERM (a scheduler's stop, ``kill``) ends ``ganvirt run`` like Ctrl-C: exit 143, and the
    temporary Prefect server it started does not outlive it."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "ganvirt.cli", "run", "--steps", "100000"], env=env_for(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while resume_step(tmp_path) < 0:  # training has started: the server is up
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        servers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "uvicorn" in " ".join(c.cmdline())]
        assert servers, "no temporary Prefect server found"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
        assert "ganvirt: terminated" in proc.stderr.read()
        gone, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
