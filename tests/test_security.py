"""Security properties, each checked on the code or on what a real run wrote:

- servers bind to 127.0.0.1 by default (``ganvirt up``, the Makefile's UIs, compose's ports);
- ``torch.load`` only with ``weights_only=True``, ``np.load`` only with ``allow_pickle=False``,
  and no pickle module anywhere in the product;
- credentials for remote sources come from URLs or the environment and never reach a file under
  ``GANVIRT_HOME`` (MLflow and Prefect databases, logs, manifests, snapshots) or the console.
"""

import ast
import functools
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.idx import write_pair
from tests.test_crash import OPEN, env_for

PRODUCT = ["gan", "tasks", "flows", "catalog", "ganvirt", "benchmarks"]


def product_sources():
    for package in PRODUCT:
        yield from sorted((REPO / package).rglob("*.py"))


def calls(tree: ast.AST, dotted: str):
    """Every call of ``dotted`` (e.g. ``torch.load``) in ``tree``."""
    head, _, attr = dotted.rpartition(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == head:
            yield node


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "missing"


def test_loads_never_unpickle():
    found = {"torch.load": 0, "np.load": 0}
    for path in product_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in calls(tree, "torch.load"):
            found["torch.load"] += 1
            assert keyword(node, "weights_only") is True, f"{path}:{node.lineno}: torch.load without weights_only=True"
        for node in calls(tree, "np.load"):
            found["np.load"] += 1
            assert keyword(node, "allow_pickle") is False, f"{path}:{node.lineno}: np.load without allow_pickle=False"
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"), \
                    f"{path}:{node.lineno}: imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in ("read_pickle", "to_pickle"):
                raise AssertionError(f"{path}:{node.lineno}: pandas pickle I/O")
    assert found["torch.load"] >= 3 and found["np.load"] >= 5  # the scan sees the real call sites


def test_servers_bind_to_localhost_by_default():
    services = (REPO / "ganvirt" / "services.py").read_text()
    hosts = re.findall(r'"--host",\s*"([^"]+)"', services)
    assert hosts and set(hosts) == {"127.0.0.1"}
    make = (REPO / "Makefile").read_text()
    make_hosts = re.findall(r"(?:--host|-h)\s+(\S+)", make)
    assert make_hosts and set(make_hosts) == {"127.0.0.1"}
    compose = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
    published = [(name, port) for name, svc in compose["services"].items() for port in svc.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith("${GANVIRT_BIND:-127.0.0.1}:"), f"compose service {name} publishes {port} on every interface"


def secret_free(home: Path, secrets: list[str]) -> list[str]:
    """Files under ``home`` whose bytes hold one of ``secrets``."""
    hits = []
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(home)}: {s}" for s in secrets if s.encode() in data]
    return hits


@pytest.mark.slow
def test_credentials_never_reach_the_stores_or_the_console(tmp_path):
    """A real ``ganvirt run`` on an http source whose URLs carry tokens, with a bearer token and
    cloud keys in the environment: the server gets the credentials; no file under
    ``GANVIRT_HOME`` (SQLite databases included) and no console line holds any of them."""
    www = tmp_path / "www"
    www.mkdir()
    write_pair(www, "tok", 200)
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    secrets = ["QUERYSECRET1", "QUERYSECRET2", "ENVBEARER3", "ENVCLOUDKEY4"]
    source = f"{base}/tok-images-idx3-ubyte.gz?token={secrets[0]},{base}/tok-labels-idx1-ubyte.gz?X-Amz-Signature={secrets[1]}"
    home = tmp_path / "home"
    env = env_for(home) | {"GANVIRT_HTTP_TOKEN": secrets[2], "AWS_SECRET_ACCESS_KEY": secrets[3]}
    try:  # the images are uniform noise: a smooth G is nearer each than they are to each other, and the
        # near-copy filter refuses it (the three-stage DCGAN and the MLP did); lr 0.5 saturates G's pixels, far from all
        out = subprocess.run([sys.executable, "-m", "ganvirt.cli", "run", "--source", source, "--mode-seeking", "0", "--r1", "0", "--steps", "30", "--lr", "0.5",
                              "--eval-samples", "100", "--classifier-steps", "30", "-n", "50", *OPEN],
                             env=env, capture_output=True, text=True, timeout=600)
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0, out.stderr[-3000:]
    assert any(secrets[0] in s and secrets[2] in s for s in seen), seen  # the credentials were used
    assert (home / "mlflow.db").exists() and (home / "prefect" / "prefect.db").exists()
    assert any("token=***" in p.read_text() for p in (home / "snapshots").rglob("meta.json"))  # recorded, redacted
    assert secret_free(home, secrets) == []
    assert [s for s in secrets if s in out.stdout + out.stderr] == []
