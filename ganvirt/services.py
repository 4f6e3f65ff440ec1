"""Server processes of `ganvirt up`: a Prefect server, an MLflow tracking server and the
deployment runner on 127.0.0.1, over the same GANVIRT_HOME store that the embedded default
uses; started together, stopped together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ganvirt import settings


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class Services:
    """Child processes, each in its own process group so that stopping takes its children too."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        out = open(log, "ab")
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_healthy(self, name: str, url: str, timeout: float, log: Path, poll: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with code {self.procs[name].returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy at {url} after {timeout:.0f} s; see {log}")
            time.sleep(poll)

    def dead(self) -> str | None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                return f"{name} exited with code {p.returncode}"
        return None

    def stop(self, grace: float = 20.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@dataclass(frozen=True)
class Stack:
    """What ``ganvirt up`` starts, and on which stores (defaults: SQLite and a folder under
    ``GANVIRT_HOME``; in production PostgreSQL and an object store)."""
    prefect_port: int = 4200
    mlflow_port: int = 5000
    cron: str = "0 2 * * *"
    source: str = "digits"
    prefect_database: str | None = None   # SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@host/prefect
    mlflow_backend_store: str | None = None  # e.g. postgresql://user:pw@host/mlflow
    mlflow_artifacts: str | None = None   # e.g. s3://bucket/mlflow (credentials from AWS_* variables)


def server_commands(stack: Stack, home: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The Prefect and MLflow server commands of ``stack``, each with its environment."""
    bindir = Path(sys.executable).parent
    prefect_api = f"http://127.0.0.1:{stack.prefect_port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_API_URL": prefect_api, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "true", "GANVIRT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    prefect_env = dict(env)
    if stack.prefect_database:
        prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"] = stack.prefect_database
    return {
        "prefect server": ([str(bindir / "prefect"), "server", "start", "--host", "127.0.0.1",
                            "--port", str(stack.prefect_port)], prefect_env),
        "mlflow server": ([str(bindir / "mlflow"), "server",
                           "--backend-store-uri", stack.mlflow_backend_store or f"sqlite:///{home / 'mlflow.db'}",
                           "--artifacts-destination", stack.mlflow_artifacts or str(home / "mlartifacts"),
                           "--host", "127.0.0.1", "--port", str(stack.mlflow_port), "--workers", "1"], env),
    }


def up(stack: Stack) -> int:
    """Start everything, wait for health, print the UI addresses, serve until SIGINT/SIGTERM."""
    for label, port in (("--prefect-port", stack.prefect_port), ("--mlflow-port", stack.mlflow_port)):
        if not port_free(port):
            raise ValueError(f"{label} {port}: 127.0.0.1:{port} is already in use (choose another port)")
    home = settings.home()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    prefect_api = f"http://127.0.0.1:{stack.prefect_port}/api"
    mlflow_url = f"http://127.0.0.1:{stack.mlflow_port}"
    commands = server_commands(stack, home)
    services = Services()
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, (cmd, env) in commands.items():
            services.start(name, cmd, env, logs / f"{name.replace(' ', '-')}.log")
        services.wait_healthy("prefect server", f"{prefect_api}/health", 120, logs / "prefect-server.log")
        services.wait_healthy("mlflow server", f"{mlflow_url}/health", 120, logs / "mlflow-server.log")
        runner_env = {**commands["mlflow server"][1], "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": mlflow_url}
        services.start("deployment runner", [sys.executable, "-m", "flows.deployments", "--cron", stack.cron,
                                             "--source", stack.source], runner_env, logs / "runner.log")
        print(f"Prefect UI:  http://127.0.0.1:{stack.prefect_port}  (deployments: virtualize/scheduled, republish/on-demand)")
        print(f"MLflow UI:   {mlflow_url}")
        print(f"logs:        {logs}; Ctrl-C stops everything", flush=True)
        while not stop["now"]:
            problem = services.dead()
            if problem:
                raise RuntimeError(f"{problem}; see {logs}")
            time.sleep(0.5)
        return 0
    finally:
        services.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
