"""The consumer's side: pull a version into a folder (converting its format, materialising a
virtual one), or load it straight into numpy or pandas."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from catalog import formats
from catalog.store import (
    MANIFEST,
    CatalogError,
    _local_files,
    default_root,
    fetch,
    filesystem,
    is_local,
    manifest,
    parse_ref,
    resolve,
    verify,
)

# (manifest) → (images, labels): samples a virtual dataset's generator; given by the caller
# (ganvirt passes one that loads the registered model from MLflow), since catalog/ knows no MLflow.
Materialiser = Callable[[dict], tuple[np.ndarray, np.ndarray | None]]


def materialise(m: dict, sampler: Materialiser | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The images of a virtual manifest, checked against its recorded ``content_sha256``."""
    if sampler is None:
        raise CatalogError(f"{m['name']}@{m['version']} is virtual: materialise it with "
                           f"'ganvirt pull {m['name']}@{m['version']} --to DIR' (needs the MLflow registry)")
    images, labels = sampler(m)
    digest = formats.content_sha256(images, labels)
    if digest != m["content_sha256"]:
        raise CatalogError(f"{m['name']}@{m['version']}: materialised images have sha256 {digest[:16]}…, "
                           f"the manifest records {m['content_sha256'][:16]}… (generator or software changed?)")
    return images, labels


def pull(root, ref: str, to: Path, fmt: str | None = None, force: bool = False,
         sampler: Materialiser | None = None) -> Path:
    """Put ``NAME[@VERSION]`` into the folder ``to``: the data files in ``fmt`` (default: as
    stored), ``preview.png`` and a ``manifest.json`` whose sha256s match what is in ``to``.

    Nothing is written outside ``to``: the copy is assembled and verified in a hidden folder
    inside it, then moved into place. ``to`` must be empty or absent, or hold this same pull
    already; any other content is refused unless ``force``.
    """
    name, version = parse_ref(ref)
    src = resolve(root, name, version)
    m = manifest(src)  # every file is verified as it is copied (fetch) or before it is read
    fmt = formats.check_format(fmt or m.get("format", "npz"))
    to = Path(to).expanduser().resolve()
    if to.exists() and not to.is_dir():
        raise CatalogError(f"--to {to}: exists and is not a folder")
    existing = [p for p in to.iterdir() if not p.name.startswith(".ganvirt-pull-")] if to.is_dir() else []
    if existing:
        if _same_pull(to, m, fmt):
            return to
        if not force:
            raise CatalogError(f"--to {to}: folder is not empty ({len(existing)} entries); "
                               "choose an empty folder or pass --force to write into it")
    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    stage = to / f".ganvirt-pull-{uuid.uuid4().hex[:12]}"
    stage.mkdir()
    try:
        _assemble(src, m, fmt, stage, sampler)
        _move_into(stage / "out", to)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(to, ignore_errors=True)  # nothing of a failed pull stays behind
        raise
    shutil.rmtree(stage, ignore_errors=True)
    return to


def _assemble(src: str, m: dict, fmt: str, stage: Path, sampler: Materialiser | None) -> None:
    """Write the pulled version into ``stage/out``: data in ``fmt``, preview, manifest."""
    stored = m.get("format", "npz")
    out = stage / "out"
    out.mkdir()
    if m.get("virtual"):
        images, labels = materialise(m, sampler)
        formats.write(fmt, out, images, labels)
        verify(src)  # the preview
        if "preview.png" in m["files"]:
            fs, path = filesystem(src)
            fs.get_file(f"{path}/preview.png", str(out / "preview.png"))
    elif fmt == stored:
        fetch(src, out)
    else:
        fetch(src, stage / "src")
        formats.write(fmt, out, *formats.read(stored, stage / "src"))
        if (stage / "src" / "preview.png").exists():
            shutil.copy2(stage / "src" / "preview.png", out / "preview.png")
    same = fmt == stored and not m.get("virtual")
    pulled = {**m, "format": fmt, "files": dict(m["files"]) if same else _local_files(out), "pulled_from": src}
    if fmt != stored:
        pulled["converted_from"] = stored
    if m.get("virtual"):
        pulled["virtual"], pulled["materialised"] = False, True
    (out / MANIFEST).write_text(json.dumps(pulled, indent=2))  # fetch verified a copy; others hashed just now


def _move_into(out: Path, to: Path) -> None:
    for p in sorted(out.rglob("*"), key=lambda p: len(p.parts)):
        target = to / p.relative_to(out)
        if p.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(p, target)


def _same_pull(to: Path, m: dict, fmt: str) -> bool:
    """Whether ``to`` already holds this pull; if it does but a file there was changed, the
    verification error names that file."""
    try:
        have = json.loads((to / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if (have.get("name"), have.get("version"), have.get("format")) != (m["name"], m["version"], fmt):
        return False
    verify(to)
    return True


def load(name: str, version: int | None = None, root=None,
         sampler: Materialiser | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 (N, C, H, W), labels int64 (N,) or None) of a published, verified version
    (latest when ``version`` is None) in ``root`` (default: ``GANVIRT_CATALOG_URL`` or
    ``<GANVIRT_HOME>/catalog``)."""
    root = root if root is not None else default_root()
    ref_name, ref_version = parse_ref(name)  # "NAME" or "NAME@VERSION"
    src = resolve(root, ref_name, version if version is not None else ref_version)
    m = verify(src)
    if m.get("virtual"):
        return materialise(m, sampler)
    if is_local(src):
        return formats.read(m.get("format", "npz"), Path(src))
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"ganvirt-load-{uuid.uuid4().hex[:12]}"
    try:
        fetch(src, tmp)
        return formats.read(m.get("format", "npz"), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def to_pandas(name: str, version: int | None = None, root=None):
    """One row per image: ``label`` (nullable int) and ``image`` (a uint8 (C, H, W) array)."""
    import pandas as pd

    images, labels = load(name, version, root)
    return pd.DataFrame({"label": pd.array(labels if labels is not None else [None] * len(images), dtype="Int64"),
                         "image": list(images)})
