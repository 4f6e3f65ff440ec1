"""infra/ cannot run here (no Docker engine, no cluster): parse every file and check what the
rest of the project relies on: services, ports, environment keys, entrypoints, GPU requests."""

import importlib
import json
import re

import pytest
import yaml
from prefect import Flow

from flows.params import VirtualizeParams
from flows.republish import RepublishParams
from tests.conftest import REPO

INFRA = REPO / "infra"
PACKAGES = ["gan", "ganvirt", "catalog", "registry", "snapshots", "tasks", "flows"]


def test_compose_services_ports_and_environment():
    c = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = c["services"]
    assert {"postgres", "minio", "prefect-server", "mlflow", "worker"} <= set(services)
    assert any(p.endswith(":4200") for p in services["prefect-server"]["ports"])
    assert any(p.endswith(":5000") for p in services["mlflow"]["ports"])
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_cmd = services["mlflow"]["command"]
    assert "--backend-store-uri postgresql+psycopg2://" in mlflow_cmd and "--artifacts-destination s3://" in mlflow_cmd
    assert "MLFLOW_S3_ENDPOINT_URL" in services["mlflow"]["environment"]
    worker_env = services["worker"]["environment"]
    assert {"GANVIRT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"} <= set(worker_env)
    assert "prefect worker start --pool ganvirt" in services["worker"]["command"]
    assert worker_env["GANVIRT_DASK_ADDRESS"].endswith("tcp://dask-scheduler:8786}")
    assert "dask worker tcp://dask-scheduler:8786" in services["dask-worker"]["command"]


def test_task_runner_from_the_environment(monkeypatch):
    from prefect_dask import DaskTaskRunner

    from flows.publication import task_runner

    monkeypatch.delenv("GANVIRT_TASK_RUNNER", raising=False)
    assert task_runner() is None
    monkeypatch.setenv("GANVIRT_TASK_RUNNER", "dask")
    monkeypatch.setenv("GANVIRT_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    runner = task_runner()
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.5:8786"
    monkeypatch.setenv("GANVIRT_TASK_RUNNER", "ray")
    with pytest.raises(ValueError, match="GANVIRT_TASK_RUNNER='ray'"):
        task_runner()


def test_prefect_yaml_entrypoints_and_parameters():
    spec = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"scheduled", "on-demand", "scheduled-gpu"} <= set(deployments)
    assert deployments["scheduled"]["schedules"][0]["cron"]
    for d in deployments.values():
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert isinstance(flow, Flow)
        params = RepublishParams if flow.name == "republish" else VirtualizeParams
        params(**d["parameters"]["p"])  # the UI form's defaults validate
    assert deployments["scheduled-gpu"]["work_pool"]["job_variables"]["gpu"] == 1


def test_gpu_job_template_requests_a_gpu_and_declares_its_variables():
    t = json.loads((INFRA / "k8s" / "gpu-base-job-template.json").read_text())
    container = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu }}"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(t["job_configuration"])))
    assert used <= set(t["variables"]["properties"]), used - set(t["variables"]["properties"])
    assert t["variables"]["properties"]["gpu"]["default"] == 1


def test_dockerfiles_install_torch_first_and_copy_every_package():
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (INFRA / name).read_text()
        assert text.index("torch==2.13.0") < text.index("pip install -e")
        for package in PACKAGES:
            assert f"COPY {package} {package}" in text, (name, package)
