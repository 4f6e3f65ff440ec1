"""The layout's rules, checked on the source (AST scans) and on what the commands import.

- Imports run downward only: each product package may import the packages listed under it in
  ``MAY_IMPORT`` (the README's layout table), and no two product modules import each other.
- ``gan/``, ``catalog/`` and ``snapshots/`` never import Prefect or MLflow; ``registry/``
  never imports Prefect; ``ganvirt pull``, ``sample`` and ``datasets`` load no Prefect.
- Public APIs only: no name that begins with ``_`` from prefect, mlflow or torch, and no
  ``PREFECT__`` variable, anywhere in the product.
- The CLI, ``catalog/`` and ``registry/`` import where ``fcntl`` does not exist (Windows).
- No product module over 400 lines, no function over 60.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

MAY_IMPORT = {
    "ganvirt": {"flows", "tasks", "registry", "snapshots", "catalog", "gan"},
    "flows": {"tasks", "registry", "snapshots", "catalog", "gan"},
    "tasks": {"registry", "snapshots", "catalog", "gan"},
    "registry": {"catalog", "gan"},
    "snapshots": set(),
    "catalog": set(),
    "gan": set(),
}
PRODUCT = set(MAY_IMPORT)
ORCHESTRATION = {"prefect", "mlflow"}
NO_ORCHESTRATION = {"gan": ORCHESTRATION, "catalog": ORCHESTRATION, "snapshots": ORCHESTRATION,
                    "registry": {"prefect"}}
PRIVATE_CHECKED = {"torch", "mlflow", "prefect"}


def product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT for p in (REPO / pkg).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (``from a import b`` counts as ``a.b`` when
    that is a product module, else as ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (REPO / Path(*sub.split("."))).with_suffix(".py").exists() or (REPO / Path(*sub.split("."))).is_dir()
                found.add(sub if is_module else node.module)
    return found


def test_imports_run_downward_only():
    wrong = {}
    for path in product_files():
        own = module_of(path).split(".")[0]
        roots = {m.split(".")[0] for m in imports(path)}
        bad = (roots & PRODUCT) - MAY_IMPORT[own] - {own}
        if bad:
            wrong[str(path.relative_to(REPO))] = sorted(bad)
    assert wrong == {}


def test_no_two_modules_import_each_other():
    graph = {module_of(p): {m for m in imports(p) if m.split(".")[0] in PRODUCT} for p in product_files()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if b != a and a in graph.get(b, set())})
    assert pairs == []


@pytest.mark.parametrize("package", sorted(NO_ORCHESTRATION))
def test_libraries_do_not_import_orchestration(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    leaks = {str(p.relative_to(REPO)): {m.split(".")[0] for m in imports(p)} & NO_ORCHESTRATION[package]
             for p in files}
    assert {k: v for k, v in leaks.items() if v} == {}


def private_uses(source: str) -> list[str]:
    """Uses of a private name of torch, mlflow or prefect in ``source``, and PREFECT__ variables."""
    tree = ast.parse(source)
    aliases, found = set(), []
    private = lambda name: name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PRIVATE_CHECKED:
                    aliases.add(a.asname or a.name.split(".")[0])
                    found += [a.name for part in a.name.split(".") if private(part)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PRIVATE_CHECKED:
            found += [node.module for part in node.module.split(".") if private(part)]
            for a in node.names:
                aliases.add(a.asname or a.name)
                if private(a.name):
                    found.append(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases and private(node.attr):
                found.append(".".join([base.id, *reversed(chain)]))
    return found + ["PREFECT__"] * source.count("PREFECT__")


def test_product_uses_public_names_only():
    found = {str(p.relative_to(REPO)): private_uses(p.read_text()) for p in product_files()}
    for extra in ("Makefile", ".ci/run", "infra"):
        for p in [REPO / extra] if (REPO / extra).is_file() else sorted((REPO / extra).rglob("*")):
            if p.is_file() and "PREFECT__" in p.read_text(errors="replace"):
                found[str(p.relative_to(REPO))] = ["PREFECT__"]
    assert {k: v for k, v in found.items() if v} == {}


def test_private_name_scan_catches_each_kind():
    code = textwrap.dedent("""
        import torch
        from torch import nn
        import mlflow.store.tracking._sql as s
        from prefect.settings import _private
        torch._foreach_lerp_([], [], 0.5)
        nn.init._calculate_fan_in_and_fan_out(w)
        env = {"PREFECT__SERVER_EPHEMERAL": "1"}
        x = torch.nn.Module.__init__  # dunders are public
    """)
    assert private_uses(code) == ["mlflow.store.tracking._sql", "prefect.settings._private",
                                  "torch._foreach_lerp_", "nn.init._calculate_fan_in_and_fan_out", "PREFECT__"]


def test_sizes():
    too_big = {}
    for path in product_files():
        source = path.read_text()
        if len(source.splitlines()) > 400:
            too_big[str(path.relative_to(REPO))] = len(source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_big[f"{path.relative_to(REPO)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert too_big == {}


def run_python(code: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI"))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**env, "GANVIRT_HOME": str(home)},
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_imports_without_fcntl(tmp_path):
    out = run_python("""
        import sys
        sys.modules["fcntl"] = None  # as on Windows: importing it raises ImportError
        import catalog, catalog.consume, catalog.store, registry.generators, snapshots.sources
        from ganvirt.cli import build_parser, main
        build_parser()
        assert main(["datasets"]) == 0
        print("ok")
    """, tmp_path / "home")
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_consumer_commands_load_no_prefect(tmp_path):
    out = run_python("""
        import sys
        from pathlib import Path
        import numpy as np
        import catalog
        from ganvirt import settings
        images = np.zeros((4, 1, 8, 8), np.uint8)
        catalog.publish(settings.catalog_root(), "tiny", lambda d: np.savez(d / "data.npz", images=images),
                        {"format": "npz", "shape": list(images.shape), "class_counts": [],
                         "content_sha256": catalog.content_sha256(images, None)})
        from ganvirt.cli import main
        assert main(["datasets"]) == 0
        out = Path(settings.home()).parent
        assert main(["pull", "tiny@1", "--to", str(out / "pulled")]) == 0
        assert main(["sample", "nosuch", "-n", "2", "--out", str(out / "s.npz")]) == 1  # not registered
        assert "mlflow" in sys.modules and "registry.generators" in sys.modules
        print("prefect loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "prefect")[:3])
    """, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "prefect loaded: []", out.stdout
