"""The published-dataset store: ``ROOT/NAME/VERSION/`` with data files and ``manifest.json``.

Versions are integers counted from 1, immutable, and appear atomically: files are written into a
hidden temporary folder beside the versions, hashed into the manifest, and the folder is renamed
to the next free version number. ``rename`` onto an existing (non-empty) version fails, so two
publishers racing on one name each get a version of their own. Readers skip hidden folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"


class CatalogError(ValueError):
    """A missing dataset or version, or a file that fails verification."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def publish(root: Path, name: str, write: Callable[[Path], None], manifest: dict) -> Path:
    """Write a new version of ``name``: ``write(folder)`` fills the files, then the manifest
    (with ``name``, ``version``, ``created`` and a sha256 per file) is added and the version
    committed by one rename. Returns the version folder."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a published version is for every reader
    try:
        write(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        for _ in range(1000):  # bounded: a version number is claimed within a few tries
            version = _next_version(base)
            body = {"name": name, "version": version,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **manifest, "files": files}
            (tmp / MANIFEST).write_text(json.dumps(body, indent=2))
            try:
                os.rename(tmp, base / str(version))
                return base / str(version)
            except OSError:  # another publisher took this number first: take the next one
                continue
        raise CatalogError(f"{base}: could not claim a version number")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _next_version(base: Path) -> int:
    return max(versions_of(base), default=0) + 1


def versions_of(base: Path) -> list[int]:
    """Committed versions (folders named by an integer that hold a manifest), ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir()
                  if p.name.isdigit() and (p / MANIFEST).is_file())


def names(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and versions_of(p))


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` → (name, version or None for the latest)."""
    name, _, version = ref.partition("@")
    if version and not version.isdigit():
        raise CatalogError(f"{ref!r}: version must be a number, as in {name}@3")
    return name, int(version) if version else None


def resolve(root: Path, name: str, version: int | None = None) -> Path:
    """The folder of ``name@version`` (latest when version is None)."""
    found = versions_of(Path(root) / name)
    if not found:
        raise CatalogError(f"no published dataset {name!r} in {root}")
    version = found[-1] if version is None else version
    if version not in found:
        raise CatalogError(f"{name!r} has no version {version} (published: {found})")
    return Path(root) / name / str(version)


def manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def verify(folder: Path) -> dict:
    """Check every file against the manifest's sha256; raise naming the first that differs."""
    m = manifest(folder)
    for fname, digest in m["files"].items():
        p = Path(folder) / fname
        if not p.is_file():
            raise CatalogError(f"{p}: missing (listed in {MANIFEST})")
        if sha256_file(p) != digest:
            raise CatalogError(f"{p}: sha256 mismatch (the file was changed or corrupted)")
    return m


def pull(root: Path, ref: str, to: Path) -> Path:
    """Copy ``NAME[@VERSION]`` into ``to/NAME/VERSION`` and verify every file there.

    The copy is assembled in a temporary folder and renamed, so a failed pull leaves nothing.
    """
    name, version = parse_ref(ref)
    src = resolve(root, name, version)
    verify(src)
    dest = Path(to) / name / src.name
    if dest.exists():
        verify(dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)
    try:
        for p in src.iterdir():
            shutil.copy2(p, tmp / p.name)
        verify(tmp)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
