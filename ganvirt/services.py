"""Server processes: `ganvirt up` (a Prefect server, an MLflow tracking server and the
deployment runner on 127.0.0.1, over the same GANVIRT_HOME store that the embedded default
uses; stopped together) and the temporary Prefect server of one `ganvirt run`."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import Future
from importlib.util import find_spec
from pathlib import Path

from ganvirt import locks, settings


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryPrefect:
    """The Prefect server of one ``ganvirt`` process in ephemeral mode, started before Prefect
    is imported, so that its start-up (imports, and on a fresh home the database migrations:
    about 10 s on 2 cores) overlaps this process's own imports instead of following them.

    It is the server Prefect itself would start (the same uvicorn app, UI off, ephemeral
    settings, PREFECT_HOME's database); this process reaches it through ``PREFECT_API_URL``,
    set for this process until :meth:`stop` (at exit at the latest). Its log is
    ``GANVIRT_HOME/logs/prefect-temporary-server.log``."""

    NAME = "Prefect temporary server"

    def __init__(self) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = settings.home() / "logs" / "prefect-temporary-server.log"
        self.services = Services()
        self.ready: Future = Future()
        self.stopped = False
        self._set_env = {"PREFECT_API_URL": self.api_url}
        if "PREFECT_UI_URL" not in os.environ:
            self._set_env["PREFECT_UI_URL"] = ""  # no UI to link to ("View at ..." lines)
        os.environ.update(self._set_env)
        atexit.register(self.stop)  # registered before Prefect's own exit hooks, so it runs after them
        threading.Thread(target=self._start, name="ganvirt-prefect-server", daemon=True).start()

    @classmethod
    def wanted(cls) -> bool:
        """Ephemeral mode (no API URL in the environment, none in Prefect's profiles file) and
        Prefect not imported yet (its settings are read on import)."""
        if "prefect" in sys.modules or os.environ.get("PREFECT_API_URL"):
            return False
        if os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true").lower() in ("0", "false", "no"):
            return False
        return not _profile_api_url()

    def _start(self) -> None:
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            locks.first_time("stores-prefect", locks.prefect_mark(), self._launch, always=True)
            self.ready.set_result(self.api_url)
        except BaseException as exc:  # handed to whoever waits
            self.ready.set_exception(exc)

    def _launch(self) -> None:
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        for key in self._set_env:
            env.pop(key)
        site = Path(find_spec("prefect").origin).parents[1]  # found without importing Prefect
        self.services.start(self.NAME, [
            sys.executable, "-m", "uvicorn", "--app-dir", str(site), "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env, self.log)
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
        self.services.wait_healthy(self.NAME, f"{self.api_url}/health", timeout, self.log, poll=0.1)

    def wait(self) -> str:
        """Block until the server answers; its API URL (raises if it did not start)."""
        return self.ready.result()

    def stop(self) -> None:
        """Send what Prefect still queues (logs, events) while the server is up, then stop it.
        Once: the exit hook finds it stopped."""
        if self.stopped:
            return
        self.stopped = True
        if "prefect.logging.handlers" in sys.modules and self.ready.done() and not self.ready.exception():
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
        for key, value in self._set_env.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        self.services.stop(grace=5.0)


def _profile_api_url() -> bool:
    """Whether Prefect's profiles file (``PREFECT_HOME/profiles.toml``) may set an API URL (then
    Prefect decides, after its import, whether to start a temporary server)."""
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or Path(os.environ.get("PREFECT_HOME", "~/.prefect")) / "profiles.toml")
    try:
        return "PREFECT_API_URL" in path.expanduser().read_text()
    except OSError:
        return False


def up(prefect_port: int = 4200, mlflow_port: int = 5000, cron: str = "0 2 * * *",
       source: str = "digits") -> int:
    """Start everything, wait for health, print the UI addresses, serve until SIGINT/SIGTERM."""
    for label, port in (("--prefect-port", prefect_port), ("--mlflow-port", mlflow_port)):
        if not port_free(port):
            raise ValueError(f"{label} {port}: 127.0.0.1:{port} is already in use (choose another port)")
    home = settings.home()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    prefect_api = f"http://127.0.0.1:{prefect_port}/api"
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_API_URL": prefect_api, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "GANVIRT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    services = Services()
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        services.start("prefect server", [str(bindir / "prefect"), "server", "start", "--host", "127.0.0.1",
                                          "--port", str(prefect_port)], env, logs / "prefect-server.log")
        services.start("mlflow server", [
            str(bindir / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination", str(home / "mlartifacts"), "--host", "127.0.0.1",
            "--port", str(mlflow_port), "--workers", "1"], env, logs / "mlflow-server.log")
        services.wait_healthy("prefect server", f"{prefect_api}/health", 120, logs / "prefect-server.log")
        services.wait_healthy("mlflow server", f"{mlflow_url}/health", 120, logs / "mlflow-server.log")
        runner_env = {**env, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": mlflow_url}
        services.start("deployment runner", [sys.executable, "-m", "flows.deployments", "--cron", cron,
                                             "--source", source], runner_env, logs / "runner.log")
        print(f"Prefect UI:  http://127.0.0.1:{prefect_port}  (deployments: virtualize/scheduled, republish/on-demand)")
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
