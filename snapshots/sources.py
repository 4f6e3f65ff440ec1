"""Readers for every source kind; each returns uint8 images (N, C, H, W) and optional labels.

Source strings: ``digits`` (scikit-learn's bundled 8x8 digits); an MNIST-style IDX folder, or
comma-separated IDX files or http(s) URLs (``.gz`` or raw); a folder of images (class
sub-folders, a ``labels.csv`` or flat; any size and mode: ``snapshots.images``); an ``.npz`` with ``images`` and optional ``labels``. Every problem is a
``SourceError`` whose message names the file or field and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snapshots import images
from snapshots.images import ImageOptions

MAX_IDX_BYTES = 1 << 31          # refuse forged headers that would allocate more than 2 GiB
IDX_RE = re.compile(r"^(?P<prefix>.+?)-(?P<kind>images|labels)-idx(?P<ndim>\d)-ubyte(\.gz)?$")


class SourceError(ValueError):
    """A source that cannot be read; the message says which file or field and why."""


@dataclass
class RawData:
    images: np.ndarray                       # uint8 (N, C, H, W)
    labels: np.ndarray | None                # int64 (N,) or None
    classes: list[str] | None = None         # class names, index = label
    notes: list[str] = field(default_factory=list)  # things worth a log line (skipped files)
    file: Path | None = None                 # the .npy that ``images`` is memory-mapped from, if any


def read(source: str, downloads: Path, options: ImageOptions | None = None, scratch: Path | None = None) -> RawData:
    """Read any supported source; http(s) files are fetched once into ``downloads``. ``options``
    shape image folders; ``scratch`` lets their decoded images stay on disk (``read_image_folder``)."""
    if source == "digits":
        return read_digits()
    parts = [p.strip() for p in source.split(",") if p.strip()]
    if len(parts) > 1 or is_url(source):
        return read_idx_files([fetch(p, downloads) if is_url(p) else Path(p) for p in parts])
    check_local(source)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return read_npz(path)
    if path.is_file():
        return read_idx_files([path])
    if any(IDX_RE.match(p.name) for p in path.iterdir()):
        return read_idx_files(sorted(p for p in path.iterdir() if p.is_file()), folder=True)
    return read_image_folder(path, options, scratch)


def check_local(source: str) -> None:
    """Refuse a source whose local files or folder do not exist (URLs are checked when fetched):
    cheap, so the CLI calls it before any store starts."""
    if source == "digits":
        return
    for part in (p.strip() for p in source.split(",") if p.strip()):
        if not is_url(part) and not Path(part).expanduser().exists():
            what = f"source {source!r}" if part == source.strip() else f"source {source!r}: {part!r}"
            raise SourceError(f"{what}: no such file or folder (expected 'digits', an IDX folder or files, "
                              "an image folder, an .npz, or an http(s) URL)")


def content_key(source: str, options: ImageOptions | None = None) -> str | None:
    """sha256 of what a local source is made of, read as raw bytes without decoding (every file
    under a folder, with its relative path), or of sklearn's version for ``digits``, and of the
    image ``options`` that shape a folder. None for http(s) sources, whose content can change
    behind the same URL: those are always read."""
    h = hashlib.sha256(b"ganvirt-source-v1\0")
    if options is not None and options != ImageOptions():
        h.update(f"options {options.key()}\0".encode())
    if source == "digits":
        import sklearn

        h.update(f"digits sklearn {sklearn.__version__}".encode())
        return h.hexdigest()
    if is_url(source) or any(is_url(p.strip()) for p in source.split(",")):
        return None
    for part in sorted(p.strip() for p in source.split(",") if p.strip()):
        path = Path(part).expanduser()
        if not path.exists():
            return None  # read() will say what is missing
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


SECRET_PARAMS = re.compile(r"(token|key|secret|signature|sig|password|passwd|auth|credential|x-amz-[a-z-]+)",
                           re.IGNORECASE)


def redact(source: str) -> str:
    """``source`` as it may be logged or recorded: URL user-info and secret-looking query values
    (``token``, ``key``, ``signature``, ``X-Amz-*``, …) replaced by ``***``."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    out = []
    for part in source.split(","):
        if not is_url(part.strip()):
            out.append(part)
            continue
        u = urlsplit(part.strip())
        netloc = ("***@" if "@" in u.netloc else "") + u.netloc.rsplit("@", 1)[-1]
        query = urlencode([(k, "***" if SECRET_PARAMS.search(k) else v) for k, v in parse_qsl(u.query, keep_blank_values=True)],
                          safe="*")
        out.append(urlunsplit((u.scheme, netloc, u.path, query, u.fragment)))
    return ",".join(out)


def hide_credentials(source: str) -> str:
    """``source`` with its URL credentials replaced by ``***`` (see ``redact``), the original kept
    in this process's environment for ``reveal``: flow-run parameters, which Prefect stores, then
    never hold a secret. Sources without credentials come back unchanged."""
    hidden = redact(source)
    if hidden != source:
        os.environ[_stash_key(hidden)] = source
    return hidden


def reveal(source: str) -> str:
    """The original of a ``hide_credentials`` result (in the same process), else ``source``."""
    return os.environ.get(_stash_key(source), source) if "***" in source else source


def _stash_key(hidden: str) -> str:
    return "GANVIRT_SOURCE_" + hashlib.sha256(hidden.encode()).hexdigest()[:16].upper()


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def fetch(url: str, downloads: Path, timeout: float = 30.0) -> Path:
    """Download ``url`` once into ``downloads`` (keyed by the URL) and return the local file."""
    from urllib.parse import urlsplit

    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "download"
    target = downloads / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(name + ".part")
    try:
        request = urllib.request.Request(url)
        token = os.environ.get("GANVIRT_HTTP_TOKEN", "").strip()  # credentials from the environment
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
    except urllib.error.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{redact(url)}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"{redact(url)}: cannot fetch ({reason})") from None
    os.replace(tmp, target)
    return target


def read_digits() -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 → 0..255
    return RawData(images, d.target.astype(np.int64), [str(i) for i in range(10)])


# ---------------------------------------------------------------- IDX (MNIST-style)

def _open_stream(path: Path) -> io.BufferedIOBase:
    raw = open(path, "rb")
    head = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip or raw) of unsigned bytes → numpy array of its declared shape."""
    try:
        with _open_stream(path) as f:
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\x00\x00":
                raise SourceError(f"{path}: not an IDX file (bad magic {header.hex() or 'empty'})")
            if header[2] != 0x08:
                raise SourceError(f"{path}: IDX data type 0x{header[2]:02x} unsupported (expected 0x08, unsigned byte)")
            ndim = header[3]
            if not 1 <= ndim <= 4:
                raise SourceError(f"{path}: IDX with {ndim} dimensions (expected 1 to 4)")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise SourceError(f"{path}: truncated IDX header")
            dims = [int.from_bytes(dims_raw[4 * i:4 * i + 4], "big") for i in range(ndim)]
            size = math.prod(dims)  # Python ints: a forged header cannot overflow
            if size > MAX_IDX_BYTES:
                raise SourceError(f"{path}: IDX header declares {dims} ({size} bytes), over the {MAX_IDX_BYTES}-byte limit")
            data = f.read(size)
            if len(data) < size:
                raise SourceError(f"{path}: truncated IDX data ({len(data)} of {size} bytes for shape {dims})")
            if f.read(1):
                raise SourceError(f"{path}: trailing bytes after the IDX data of shape {dims}")
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # zlib: a damaged gzip stream
        raise SourceError(f"{path}: cannot read ({exc})") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_idx_files(paths: list[Path], folder: bool = False) -> RawData:
    """Pair ``PREFIX-images-idx3-ubyte`` with ``PREFIX-labels-idx1-ubyte``; concatenate the pairs.

    An image file without labels (or labels without images) is skipped with a note; so is, in a
    folder, a file that is not named like an IDX file (a README beside the data).
    """
    groups: dict[str, dict[str, Path]] = {}
    notes: list[str] = []
    for p in paths:
        m = IDX_RE.match(p.name)
        if not m:
            if p.name.startswith("."):
                continue
            if folder:
                notes.append(f"skipped {p.name}: not an IDX file name")
                continue
            raise SourceError(f"{p}: not an IDX file name (expected PREFIX-images-idx3-ubyte[.gz] "
                              "or PREFIX-labels-idx1-ubyte[.gz])")
        groups.setdefault(m["prefix"], {})[m["kind"]] = p
    images, labels = [], []
    for prefix in sorted(groups):
        pair = groups[prefix]
        if set(pair) != {"images", "labels"}:
            (kind, lone), = pair.items()
            notes.append(f"skipped {lone.name}: no matching {prefix}-{'labels' if kind == 'images' else 'images'} file")
            continue
        x, y = read_idx(pair["images"]), read_idx(pair["labels"])
        if x.ndim != 3:
            raise SourceError(f"{pair['images']}: expected a 3-d IDX (N, H, W), got shape {x.shape}")
        if y.ndim != 1:
            raise SourceError(f"{pair['labels']}: expected a 1-d IDX (N,), got shape {y.shape}")
        if len(x) != len(y):
            raise SourceError(f"{pair['images'].name} has {len(x)} images but {pair['labels'].name} has {len(y)} labels")
        images.append(x[:, None])
        labels.append(y.astype(np.int64))
    if not images:
        raise SourceError(f"no complete IDX image/label pair among {[p.name for p in paths]}")
    shapes = {x.shape[1:] for x in images}
    if len(shapes) > 1:
        raise SourceError(f"IDX pairs have different image shapes {sorted(shapes)}")
    return RawData(np.concatenate(images), np.concatenate(labels), None, notes)


# ---------------------------------------------------------------- NPZ

def read_npz(path: Path) -> RawData:
    """``images``: uint8 (N,H,W), (N,H,W,C) or (N,C,H,W), or float in [0, 1]; ``labels``: ints."""
    try:
        _check_npz_headers(path)
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise SourceError(f"{path}: no 'images' array (found {z.files})")
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else None
    except SourceError:
        raise
    except Exception as exc:  # untrusted bytes: any parse failure is "not a readable .npz"
        raise SourceError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    return RawData(_to_nchw_uint8(images, f"{path}: images"), _check_labels(labels, len(images), f"{path}: labels"))


def _check_npz_headers(path: Path) -> None:
    """Read each array's header before numpy allocates it: a forged shape that declares more
    bytes than the member holds (or more than MAX_IDX_BYTES) is refused, as are object arrays."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise SourceError(f"{path}: {info.filename} holds Python objects (refused: no pickle)")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES or nbytes > info.file_size:
                raise SourceError(f"{path}: {info.filename} declares shape {shape} of {dtype} ({nbytes} bytes), "
                                  f"more than it holds ({info.file_size} bytes) or the {MAX_IDX_BYTES}-byte limit")


def _to_nchw_uint8(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise SourceError(f"{what}: shape {x.shape}, expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise SourceError(f"{what}: contains NaN or infinite values")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise SourceError(f"{what}: float values must lie in [0, 1], found [{x.min():g}, {x.max():g}]")
        return np.round(x * 255).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise SourceError(f"{what}: integer values must lie in [0, 255], found [{x.min()}, {x.max()}]")
        return x.astype(np.uint8)
    raise SourceError(f"{what}: dtype {x.dtype}, expected uint8, integers or floats in [0, 1]")


def _check_labels(y: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    if y is None:
        return None
    if not np.issubdtype(y.dtype, np.integer):
        raise SourceError(f"{what}: dtype {y.dtype}, expected integers")
    if y.shape != (n,):
        raise SourceError(f"{what}: shape {y.shape}, expected ({n},), one per image")
    if n and y.min() < 0:
        raise SourceError(f"{what}: negative label {y.min()}, expected 0..K-1")
    return y.astype(np.int64)


# ---------------------------------------------------------------- image folder

def read_image_folder(root: Path, options: ImageOptions | None = None, scratch: Path | None = None) -> RawData:
    """Any folder of images (see ``snapshots.images``). With ``scratch`` the images stay
    memory-mapped from a file there (``RawData.file``, which the snapshot store moves into the
    snapshot); without, they are read into memory and the file is removed."""
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".tmp-decode-", dir=scratch) as tmp:
            d = images.read_folder(root, options or ImageOptions(), Path(tmp))
            if scratch is None:
                return RawData(np.array(d.images), d.labels, d.classes, d.notes)
            kept = Path(scratch) / d.file.name
            os.replace(d.file, kept)
            return RawData(np.load(kept, mmap_mode="r"), d.labels, d.classes, d.notes, kept)
    except images.ImageError as exc:
        raise SourceError(str(exc)) from None
