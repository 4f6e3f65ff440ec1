"""The production stack, for real: PostgreSQL for Prefect and MLflow, an S3 endpoint for MLflow's
artifacts and the catalog, ``ganvirt up`` over them, a ``virtualize`` run triggered through
the Prefect API as the UI sends it, then a consumer in a fresh process that knows only the
tracking URI and the catalog URL."""

import os
import subprocess
import sys
import time

import pytest

from tests.stack import Postgres, s3_env, s3_server
from tests.test_services import call, free_port, wait_for

pytestmark = pytest.mark.slow

TINY = {"source": "digits", "name": "stack", "train": {"model": "mlp", "steps": 100, "batch_size": 64},
        "evaluation": {"classifier_steps": 30, "num_samples": 300},
        "gate": {"max_fid_ratio": 1e9, "max_kid": 1e12, "min_precision": 0, "min_recall": 0, "min_tstr_accuracy": 0, "min_tstr_ratio": 0,
                 "max_dcr_share": 1, "max_near_copy_share": 1, "max_mia_auc": 1},
        "publication": {"n": 40}}


def test_postgres_and_s3_end_to_end(tmp_path):
    started = time.monotonic()
    pg = Postgres(free_port())
    s3_port = free_port()
    s3 = s3_server(s3_port, tmp_path / "s3.log")
    up = None
    try:
        prefect_db, mlflow_db = pg.create("prefect"), pg.create("mlflow")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANVIRT_"))}
        env |= s3_env(s3_port) | {"GANVIRT_HOME": str(tmp_path / "server-home"), "GANVIRT_CATALOG_URL": "s3://catalog/ganvirt"}
        wait_for(lambda: subprocess.run([sys.executable, "-c", "import boto3; c = boto3.client('s3'); "
                                         "[c.create_bucket(Bucket=b) for b in ('mlflow', 'catalog')]"],
                                        env=env, capture_output=True).returncode == 0, 60, "the S3 endpoint")
        pp, mp = free_port(), free_port()
        up = subprocess.Popen([sys.executable, "-m", "ganvirt.cli", "up", "--prefect-port", str(pp), "--mlflow-port",
                               str(mp), "--cron", "", "--prefect-database", f"postgresql+asyncpg://{prefect_db}",
                               "--mlflow-backend-store", f"postgresql+psycopg2://{mlflow_db}", "--mlflow-artifacts", "s3://mlflow"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        api = f"http://127.0.0.1:{pp}/api"

        def both_deployments():
            assert up.poll() is None, f"ganvirt up exited: {up.communicate()[0][-3000:]}"
            found = call(f"{api}/deployments/filter", {})
            return found if len(found) == 2 else None

        deployments = wait_for(both_deployments, 300, "the deployments")
        dep = next(d for d in deployments if d["name"] == "scheduled")
        run = call(f"{api}/deployments/{dep['id']}/create_flow_run", {"parameters": {"p": TINY}})
        final = wait_for(lambda: (lambda r: r if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED") else None)(
            call(f"{api}/flow_runs/{run['id']}")), 600, "the flow run")
        assert final["state"]["type"] == "COMPLETED", final["state"]

        # the stores are the production ones: rows in PostgreSQL, objects in the buckets
        count = lambda db, sql: subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "ganvirt", "-tAc",
                                                sql, db], capture_output=True, text=True, check=True).stdout.strip()
        assert int(count("prefect", "select count(*) from flow_run")) >= 1
        assert count("mlflow", "select name from registered_models where name = 'stack-generator'") == "stack-generator"
        keys = subprocess.run([sys.executable, "-c", "import boto3; c = boto3.client('s3'); print('\\n'.join("
                               "o['Key'] for b in ('mlflow', 'catalog') for o in c.list_objects_v2(Bucket=b).get('Contents', [])))"],
                              env=env, capture_output=True, text=True, check=True).stdout.split()
        assert any(k.endswith("generator.npz") for k in keys) and "ganvirt/stack/1/manifest.json" in keys

        # a consumer: a fresh process with the tracking URI and the catalog URL only
        consumer = {k: v for k, v in env.items() if k != "GANVIRT_HOME"} | {
            "GANVIRT_HOME": str(tmp_path / "consumer-home"), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mp}"}
        pulled = subprocess.run([sys.executable, "-m", "ganvirt.cli", "pull", "stack", "--to", str(tmp_path / "pulled")],
                                env=consumer, capture_output=True, text=True, timeout=300)
        assert pulled.returncode == 0 and "pulled stack@1 as npz" in pulled.stdout, pulled.stdout + pulled.stderr
        script = ("import mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/stack-generator@champion'); "
                  "print(m.predict(pd.DataFrame({'seed': [0, 1], 'label': [3, 4]})).shape)")
        loaded = subprocess.run([sys.executable, "-c", script], env={k: v for k, v in consumer.items()
                                                                      if not k.startswith("AWS_")},
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert loaded.returncode == 0 and loaded.stdout.strip().endswith("(2, 1, 8, 8)"), loaded.stderr[-2000:]
        print(f"production stack: {time.monotonic() - started:.0f} s wall (PostgreSQL 15, moto S3, Prefect server, "
              f"MLflow server, deployment runner, one flow run, a pull and a model load)")
    finally:
        if up is not None:
            up.terminate()
            out, _ = up.communicate(timeout=120)
            print(out[-1500:])
        s3.terminate()
        pg.stop()
