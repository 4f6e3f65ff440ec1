"""The layout's import rules: gan/ and catalog/ never import Prefect or MLflow."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"prefect", "mlflow"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["gan", "catalog"])
def test_library_packages_do_not_import_orchestration(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    leaks = {str(p.relative_to(REPO)): imported_roots(p) & FORBIDDEN for p in files}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_scan_catches_a_leak(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom mlflow.tracking import MlflowClient\n")
    assert imported_roots(bad) & FORBIDDEN == {"mlflow"}
