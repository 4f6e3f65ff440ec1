"""The production stack on 127.0.0.1 for tests: PostgreSQL 15 in a temporary folder (Debian's
``initdb``/``pg_ctl``, no system service) and an S3 endpoint (moto's server mode).

moto is chosen because it is pure Python from PyPI (a test dependency like any other), runs as
one process on a chosen port, and speaks the S3 API that s3fs, boto3 and MLflow use; MinIO
would be closer to production but is a separate binary that PyPI does not carry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("GANVIRT_PG_BIN", "/usr/lib/postgresql/15/bin"))
S3_KEY, S3_SECRET = "ganvirt-test", "ganvirt-test-secret"


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user there."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1:``port`` (trust auth,
    user ganvirt); removed by ``stop``."""

    def __init__(self, port: int):
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (apt-get install postgresql-15)")
        # its own folder directly under the temporary directory: as root, the cluster runs as
        # the postgres user, who cannot enter pytest's per-user temporary folders
        folder = Path(tempfile.mkdtemp(prefix="ganvirt-pg-"))
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        self.folder, self.port = folder, port
        data = folder / "data"
        subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "ganvirt", "--auth=trust",
                                    "-E", "UTF8"]), check=True, capture_output=True)
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
                       check=True, capture_output=True)
        self.data = data

    def create(self, database: str) -> str:
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ganvirt", database],
                       check=True, capture_output=True)
        return f"ganvirt@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def s3_server(port: int, log: Path) -> subprocess.Popen:
    """moto's S3 server on 127.0.0.1:``port``."""
    return subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def s3_env(port: int) -> dict[str, str]:
    """What every client of the S3 endpoint needs: credentials and the endpoint (boto3, s3fs
    and MLflow all read ``AWS_ENDPOINT_URL``; MLflow also ``MLFLOW_S3_ENDPOINT_URL``)."""
    url = f"http://127.0.0.1:{port}"
    return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url, "MLFLOW_S3_ENDPOINT_URL": url}
