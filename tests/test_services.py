"""`ganvirt up` for real: Prefect and MLflow servers and the deployment runner on free ports;
a virtualize run triggered through the Prefect API the way the UI does; its champion found over
MLflow's REST API and its dataset in the catalog; the Prefect deployments page and the MLflow
model page rendered in headless Chromium; every process stopped afterwards."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import catalog
from ganvirt.services import port_free
from tests.browser import Page, chromium, render

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, method: str | None = None, retries: int = 5):
    """One API call, retried on 503: Prefect's server answers 503 to errors a client should
    retry (such as a busy SQLite database), and its own client and UI retry them."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"})
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == retries:
                raise
            time.sleep(1 + attempt)


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def listening(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    raw = bytes.fromhex(address)
                    if len(raw) == 4:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:  # IPv6: four little-endian 32-bit words
                        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_up_serves_deployments_and_runs_them(tmp_path):
    chromium()  # the browser checks below need it: skip early rather than after the servers
    pp, mp = free_port(), free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME")}
    env["GANVIRT_HOME"] = str(home)
    proc = subprocess.Popen([sys.executable, "-m", "ganvirt.cli", "up", "--prefect-port", str(pp),
                             "--mlflow-port", str(mp), "--cron", ""], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    api = f"http://127.0.0.1:{pp}/api"
    try:
        deployments = wait_for(lambda: call(f"{api}/deployments/filter", {}) if len(
            call(f"{api}/deployments/filter", {})) == 2 else None, 240, "two deployments")
        names = {d["name"] for d in deployments}
        assert names == {"scheduled", "on-demand"}
        # both servers listen on the loopback interface only
        assert listening(pp) == {"127.0.0.1"} and wait_for(lambda: listening(mp), 120, "MLflow") == {"127.0.0.1"}
        dep = next(d for d in deployments if d["name"] == "scheduled")
        params = {"p": {"source": "digits", "name": "served",
                        "train": {"model": "mlp", "steps": 300, "batch_size": 64},  # the API names the model
                        "evaluation": {"classifier_steps": 50, "num_samples": 400},
                        "gate": {"max_fid_ratio": 1e9, "max_kid": 1e12, "min_precision": 0, "min_recall": 0,
                                 "min_tstr_accuracy": 0, "min_tstr_ratio": 0, "max_dcr_share": 1, "max_near_copy_share": 1,
                                 "max_mia_auc": 1},
                        "publication": {"n": 50}}}
        run = call(f"{api}/deployments/{dep['id']}/create_flow_run", {"parameters": params})
        final = wait_for(lambda: (lambda r: r if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED") else None)(
            call(f"{api}/flow_runs/{run['id']}")), 400, "the flow run to finish")
        assert final["state"]["type"] == "COMPLETED", final["state"]
        alias = call(f"http://127.0.0.1:{mp}/api/2.0/mlflow/registered-models/alias?name=served-generator&alias=champion")
        assert alias["model_version"]["version"] == "1"
        folder = catalog.resolve(home / "catalog", "served")
        assert catalog.verify(folder)["generator"]["version"] == "1"
        run_form_picks_each_models_defaults(api, f"http://127.0.0.1:{mp}", dep)
        run_form_switches_models(f"http://127.0.0.1:{pp}/deployments/deployment/{dep['id']}/run")
        # what a user sees: the rendered UIs (headless Chromium runs their scripts)
        prefect_page = render(f"http://127.0.0.1:{pp}/deployments")
        assert "scheduled" in prefect_page and "on-demand" in prefect_page and "virtualize" in prefect_page
        mlflow_page = render(f"http://127.0.0.1:{mp}/#/models/served-generator")
        assert "served-generator" in mlflow_page and "champion" in mlflow_page
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert f"Prefect UI:  http://127.0.0.1:{pp}" in out and f"MLflow UI:   http://127.0.0.1:{mp}" in out
    assert port_free(pp) and port_free(mp)  # nothing left behind
    leftover = subprocess.run(["pgrep", "-f", f"--port {pp}|--port {mp}|flows.deployments"],
                              capture_output=True, text=True).stdout.strip()
    assert leftover == "", leftover


def run_form_picks_each_models_defaults(api: str, mlflow_url: str, dep: dict) -> None:
    """The Run form starts from the deployment's parameters, whose training section names the
    model only; the schema offers the models as a choice. Changing only the model to dcgan, as
    the form does, trains with the DCGAN's own defaults (read back from the MLflow run's
    params, then the run is cancelled)."""
    form = dep["parameters"]["p"]
    assert form["train"] == {"model": "mlp"}
    schema = json.dumps(dep["parameter_openapi_schema"])
    assert '"const": "mlp"' in schema and '"const": "dcgan"' in schema and "mlp (the seed GAN)" in schema
    params = {"p": {**form, "name": "served-dcgan", "train": {**form["train"], "model": "dcgan"}}}
    run = call(f"{api}/deployments/{dep['id']}/create_flow_run", {"parameters": params})

    def logged_params():
        exp = call(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served-dcgan")
        runs = call(f"{mlflow_url}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]]})
        found = {p["key"]: p["value"] for r in runs.get("runs", []) for p in r["data"].get("params", [])}
        return found if "train.steps" in found else None

    logged = wait_for(logged_params, 300, "the dcgan run's params in MLflow")
    call(f"{api}/flow_runs/{run['id']}/set_state", {"state": {"type": "CANCELLING"}, "force": True})
    assert {k: logged[k] for k in ("model.kind", "train.steps", "train.batch_size", "train.lr", "train.lr_schedule",
                                   "train.probe_every")} == {
        "model.kind": "dcgan", "train.steps": "5500", "train.batch_size": "64", "train.lr": "0.0008",
        "train.lr_schedule": "cosine", "train.probe_every": "1000"}
    wait_for(lambda: call(f"{api}/flow_runs/{run['id']}")["state"]["type"] in ("CANCELLED", "CRASHED"), 120,
             "the dcgan run to stop")


def run_form_switches_models(url: str) -> None:
    """In the Run form, the training section offers the models; clicking dcgan selects it and
    shows the DCGAN's own defaults, not the MLP's. With ``GANVIRT_SCREENSHOTS`` set, the form after the
    click is saved there (the README's picture)."""
    page = Page(url)
    try:
        dcgan = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'dcgan (conditional conv GAN)')"
        page.wait_for(f"!!{dcgan} && [...document.querySelectorAll('input')].some(i => i.value === '0.0002')")
        page.evaluate(f"{dcgan}.click()")
        values = page.wait_for("(v => v.includes('0.0008') ? v : null)([...document.querySelectorAll('input')].map(i => i.value))")
        assert {"5500", "64", "0.0008", "1000", "0.1"} <= set(values) and "0.0002" not in values, values
        page.wait_for(f"{dcgan}.getAttribute('aria-selected') === 'true'", 10)  # the form shows the dcgan option
        if os.environ.get("GANVIRT_SCREENSHOTS"):
            page.evaluate("[...document.querySelectorAll('*')].find(e => e.textContent.trim() === 'Train (Optional)')"
                          ".scrollIntoView()")
            page.screenshot(os.path.join(os.environ["GANVIRT_SCREENSHOTS"], "prefect-run-form.png"))
    finally:
        page.close()
