"""The published-dataset store: ``ROOT/NAME/VERSION/`` with data files and ``manifest.json``.

ROOT is a local folder (default ``<GANVIRT_HOME>/catalog``) or any fsspec URL
(``GANVIRT_CATALOG_URL``, e.g. ``s3://bucket/prefix``; ``memory://`` in tests). Versions are
integers counted from 1 and immutable. A publisher claims a number by creating
``NAME/.claims/<v>`` exclusively (``open(..., "xb")``: the file system, or the object store's
conditional write, lets one publisher win), so two publishers racing on one name get two
versions. A version is committed by its manifest, written last: on a local folder the whole
version is assembled in a hidden folder and renamed into place; on an object store the files
are uploaded, then the manifest. Readers list only versions whose manifest exists, so a
publisher that dies leaves nothing visible (only a skipped number).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from catalog import page

MANIFEST = "manifest.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class CatalogError(ValueError):
    """A bad name, a missing dataset or version, or a file that fails verification."""


def check_name(name: str) -> str:
    """Dataset names are path segments, experiment and model names: plain, never a path."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CatalogError(f"dataset name {name!r}: expected lowercase letters, digits, '-' or '_' "
                           "(at most 63, starting with a letter or digit; no '/', '..' or spaces)")
    return name


def default_root() -> str:
    """``GANVIRT_CATALOG_URL``, else ``<GANVIRT_HOME>/catalog`` (``./.ganvirt/catalog``)."""
    url = os.environ.get("GANVIRT_CATALOG_URL", "").strip()
    if url:
        return str(Path(url.removeprefix("file://")).expanduser().resolve()) if _is_local_url(url) else url.rstrip("/")
    return str(Path(os.environ.get("GANVIRT_HOME", ".ganvirt")).expanduser().resolve() / "catalog")


def _is_local_url(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def filesystem(root: str | os.PathLike):
    """(fsspec filesystem, path inside it) of a root or version location."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(root))
    return fs, path.rstrip("/") or "/"


def is_local(root) -> bool:
    return _is_local_url(str(root))


def location(root, *parts: str) -> str:
    """``root/part/...`` as the user would write it (a path or a URL)."""
    return "/".join([str(root).rstrip("/"), *parts])


def _safe_rel(rel: str, where: str) -> str:
    """A file name from a manifest: relative, inside the version, no control characters."""
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts)
            or any(ord(ch) < 32 for ch in rel)):
        raise CatalogError(f"{where}: file name {rel!r} is not a plain relative path inside the version")
    return rel


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _local_files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


# ---------------------------------------------------------------- publish

def owner_tag() -> str:
    """``<pid>~<host>~``: names a work folder after the process that owns it, so a later process
    can tell a dead owner's leftovers (SIGKILL, power loss) from a live one's work."""
    return f"{os.getpid()}~{socket.gethostname()}~"


def sweep_orphans(folder: Path, prefix: str = "") -> list[Path]:
    """Remove the work folders ``<prefix><owner_tag>…`` in ``folder`` whose owner process was on
    this host and is gone; returns what was removed. Folders of live or remote owners stay."""
    removed = []
    if not folder.is_dir():
        return removed
    host = socket.gethostname()
    for entry in folder.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid, _, rest = entry.name[len(prefix):].partition("~")
        owner_host, sep, _ = rest.partition("~")
        if not (sep and pid.isdigit() and owner_host == host) or _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def publish(root, name: str, write: Callable[[Path], None], manifest: dict) -> str:
    """Write a new version of ``name``: ``write(folder)`` fills a local staging folder, then the
    files go to the store and the manifest (``name``, ``version``, ``created``, a sha256 per
    file) commits the version. Returns the version's location (a path or URL)."""
    check_name(name)
    local = is_local(root)
    base = Path(str(root)) / name if local else None
    if local:
        base.mkdir(parents=True, exist_ok=True)
        sweep_orphans(base, ".tmp-")  # versions that publishers killed mid-write left behind
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{owner_tag()}", dir=base))  # same file system: rename is atomic
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a published version is for every reader
    else:
        staging = Path(tempfile.mkdtemp(prefix="ganvirt-publish-"))
    try:
        write(staging)
        files = _local_files(staging)
        version = _claim(root, name)
        body = {"name": name, "version": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **manifest, "files": files}
        if local:
            (staging / MANIFEST).write_text(json.dumps(body, indent=2))
            os.rename(staging, base / str(version))
        else:
            fs, base_path = filesystem(location(root, name, str(version)))
            for rel in files:
                fs.makedirs(f"{base_path}/{rel}".rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(staging / rel), f"{base_path}/{rel}")
            fs.pipe_file(f"{base_path}/{MANIFEST}", json.dumps(body, indent=2).encode())  # the commit
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not local:
        shutil.rmtree(staging, ignore_errors=True)
    _refresh_pages(root, name)
    return location(root, name, str(version))


def _claim(root, name: str) -> int:
    """Take the next free version number of ``name`` by an exclusive create; never reused."""
    fs, base = filesystem(location(root, name))
    claims = f"{base}/.claims"
    fs.makedirs(claims, exist_ok=True)
    taken = set(versions_of(root, name))
    try:
        taken |= {int(p.rstrip("/").rsplit("/", 1)[-1]) for p in fs.ls(claims, detail=False)
                  if p.rstrip("/").rsplit("/", 1)[-1].isdigit()}
    except FileNotFoundError:
        pass
    version = max(taken, default=0) + 1
    for _ in range(1000):  # bounded: each failure means another publisher took that number
        try:
            with fs.open(f"{claims}/{version}", "xb") as f:
                f.write(f"{os.getpid()} {uuid.uuid4().hex}".encode())
            return version
        except FileExistsError:
            version += 1
    raise CatalogError(f"{location(root, name)}: could not claim a version number")


def _refresh_pages(root, name: str) -> None:
    """Regenerate the dataset's page and the root page; a page that cannot be written never
    undoes a publication (the next one rewrites it)."""
    try:
        render_pages(root, name)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        print(f"ganvirt: warning: catalog page not updated ({exc})")


def render_pages(root, name: str | None = None) -> None:
    """Rewrite the page of dataset ``name`` (every dataset's when None) and the root page, each
    file written whole, in one put."""
    fs, base = filesystem(root)
    fs.makedirs(base, exist_ok=True)
    for n in ([name] if name else names(root)):
        manifests = {v: manifest(location(root, n, str(v))) for v in versions_of(root, n)}
        fs.pipe_file(f"{base}/{n}/index.html", page.dataset_page(n, manifests).encode())
    latest = {}
    for n in names(root):
        vs = versions_of(root, n)
        latest[n] = (vs, manifest(location(root, n, str(vs[-1]))))
    fs.pipe_file(f"{base}/index.html", page.root_page(latest).encode())


# ---------------------------------------------------------------- read

def versions_of(root, name: str) -> list[int]:
    """Committed versions (folders named by an integer that hold a manifest), ascending."""
    fs, base = filesystem(location(root, name))
    try:
        entries = fs.ls(base, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for p in entries:
        leaf = p.rstrip("/").rsplit("/", 1)[-1]
        if leaf.isdigit() and fs.exists(f"{base}/{leaf}/{MANIFEST}"):
            out.append(int(leaf))
    return sorted(out)


def names(root) -> list[str]:
    fs, base = filesystem(root)
    try:
        entries = fs.ls(base, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    leaves = [p.rstrip("/").rsplit("/", 1)[-1] for p in entries]
    return sorted(n for n in leaves if NAME_RE.fullmatch(n) and versions_of(root, n))


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` → (name, version or None for the latest)."""
    name, _, version = str(ref).partition("@")
    check_name(name)
    if version and not (version.isdigit() and len(version) < 10 and int(version) > 0):
        raise CatalogError(f"{ref!r}: version must be a positive number, as in {name}@3")
    return name, int(version) if version else None


def resolve(root, name: str, version: int | None = None) -> str:
    """The location of ``name@version`` (latest when version is None)."""
    check_name(name)
    found = versions_of(root, name)
    if not found:
        raise CatalogError(f"no published dataset {name!r} in {root}")
    version = found[-1] if version is None else version
    if version not in found:
        raise CatalogError(f"{name!r} has no version {version} (published: {found})")
    return location(root, name, str(version))


def manifest(where) -> dict:
    fs, path = filesystem(where)
    try:
        body = json.loads(fs.cat_file(f"{path}/{MANIFEST}"))
    except FileNotFoundError:
        raise CatalogError(f"{location(where, MANIFEST)}: missing") from None
    except ValueError as exc:
        raise CatalogError(f"{location(where, MANIFEST)}: not valid JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
        raise CatalogError(f"{location(where, MANIFEST)}: expected an object with a 'files' mapping")
    for rel in body["files"]:
        _safe_rel(rel, location(where, MANIFEST))
    return body


def verify(where) -> dict:
    """Check every file against the manifest's sha256; raise naming the first that differs."""
    m = manifest(where)
    fs, path = filesystem(where)
    for rel, digest in m["files"].items():
        h = hashlib.sha256()
        try:
            with fs.open(f"{path}/{rel}", "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            raise CatalogError(f"{location(where, rel)}: missing (listed in {MANIFEST})") from None
        if h.hexdigest() != digest:
            raise CatalogError(f"{location(where, rel)}: sha256 mismatch (the file was changed or corrupted)")
    return m


def fetch(where, dest: Path) -> dict:
    """Copy a committed version's files into the local folder ``dest`` and verify them there."""
    from concurrent.futures import ThreadPoolExecutor

    m = manifest(where)
    fs, path = filesystem(where)
    for parent in {(dest / rel).parent for rel in m["files"]}:
        parent.mkdir(parents=True, exist_ok=True)

    read = (lambda rel: Path(path, rel).read_bytes()) if is_local(where) else (lambda rel: fs.cat_file(f"{path}/{rel}"))

    def one(item: tuple[str, str]) -> None:
        rel, digest = item
        data = read(rel)  # read once: hashed, then written
        if hashlib.sha256(data).hexdigest() != digest:
            raise CatalogError(f"{location(where, rel)}: sha256 mismatch (the file was changed or corrupted)")
        (dest / rel).write_bytes(data)

    # many small files (png): copying and hashing wait on I/O and release the GIL
    with ThreadPoolExecutor(min(16, 4 * (os.cpu_count() or 1))) as pool:
        list(pool.map(one, sorted(m["files"].items())))
    return m
