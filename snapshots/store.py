"""Snapshots: validated source content, fingerprinted, split, cached on disk.

A snapshot folder ``<root>/<fingerprint[:16]>-h<holdout%>-s<seed>/`` holds ``images.npy``
(uint8 (N, C, H, W), read back memory-mapped), ``train.npy`` and ``holdout.npy`` (index arrays),
``labels.npy`` (int64, labelled sources only) and ``meta.json``. It is written under a temporary
name and renamed, so it appears whole or not at all. Snapshots of file format 1 (one
``data.npz``) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from snapshots.sources import RawData, SourceError

FORMAT = 1        # of the fingerprint: the same content keeps its fingerprint whatever the files
FILE_FORMAT = 2   # of the folder: 1 was one data.npz; 2 is one .npy per array
ARRAYS = ("images", "labels", "train", "holdout")


@dataclass(frozen=True)
class Snapshot:
    """A reference to a cached snapshot: small enough to pass between Prefect tasks."""
    path: str                 # the snapshot folder
    fingerprint: str          # sha256 of the content (shape, pixels, labels)
    source: str               # the source string it was read from
    shape: tuple[int, int, int]  # (C, H, W)
    num_images: int
    num_classes: int          # 0 when unlabelled
    num_train: int
    num_holdout: int

    @staticmethod
    def at(path: str | Path) -> Snapshot:
        """The snapshot in folder ``path``."""
        return _from_meta(Path(path))

    def load(self) -> dict[str, np.ndarray]:
        """``images`` (memory-mapped, read-only), ``labels`` (or None), ``train`` and ``holdout``
        indices."""
        folder = Path(self.path)
        if (folder / "data.npz").exists():  # file format 1
            with np.load(folder / "data.npz", allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        else:
            out = {k: np.load(folder / f"{k}.npy", allow_pickle=False, mmap_mode="r" if k == "images" else None)
                   for k in ARRAYS if (folder / f"{k}.npy").exists()}
        out.setdefault("labels", None)
        return out


def fingerprint(images: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "shape": list(images.shape),
                         "labels": labels is not None}).encode())
    for i in range(0, len(images), 4096):  # in blocks: a memory-mapped source is never read whole
        h.update(np.ascontiguousarray(images[i:i + 4096]).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def validate(raw: RawData, holdout: float) -> None:
    x, y = raw.images, raw.labels
    if x.dtype != np.uint8 or x.ndim != 4:
        raise SourceError(f"images: expected uint8 (N, C, H, W), got {x.dtype} {x.shape}")
    if not 0 < holdout < 1:
        raise SourceError(f"holdout fraction {holdout}: expected a number between 0 and 1")
    n_hold = int(round(len(x) * holdout))
    if n_hold < 2 or len(x) - n_hold < 2:
        raise SourceError(f"{len(x)} images are too few for a {holdout:.0%} holdout split (need at least 2 on each side)")
    if y is not None and (y.shape != (len(x),) or y.min() < 0):
        raise SourceError(f"labels: expected {len(x)} labels in 0..K-1")


def stratified_split(labels: np.ndarray | None, n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, holdout) indices; each class keeps its share on both sides."""
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        k = int(round(n * holdout))
        return np.sort(perm[k:]), np.sort(perm[:k])
    train, hold = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * holdout))
        hold.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(hold))


def create(raw: RawData, source: str, root: Path, holdout: float = 0.2, seed: int = 0) -> tuple[Snapshot, bool]:
    """Validate ``raw`` and write its snapshot under ``root``, unless one with the same content,
    holdout and seed exists. Returns (snapshot, created). A memory-mapped ``raw.file`` is moved
    into the snapshot (or removed when the snapshot exists), never copied."""
    try:
        return _create(raw, source, root, holdout, seed)
    finally:
        if raw.file is not None:
            raw.file.unlink(missing_ok=True)


def _create(raw: RawData, source: str, root: Path, holdout: float, seed: int) -> tuple[Snapshot, bool]:
    validate(raw, holdout)
    fp = fingerprint(raw.images, raw.labels)
    folder = root / f"{fp[:16]}-h{round(holdout * 100)}-s{seed}"
    if (folder / "meta.json").exists():
        return _from_meta(folder), False
    train, hold = stratified_split(raw.labels, len(raw.images), holdout, seed)
    num_classes = int(raw.labels.max()) + 1 if raw.labels is not None else 0
    counts = np.bincount(raw.labels, minlength=num_classes).tolist() if raw.labels is not None else []
    meta = {
        "format": FORMAT, "file_format": FILE_FORMAT, "fingerprint": fp, "source": source,
        "shape": list(raw.images.shape[1:]), "num_images": len(raw.images),
        "num_classes": num_classes, "classes": raw.classes, "class_counts": counts,
        "holdout": holdout, "seed": seed, "num_train": len(train), "num_holdout": len(hold),
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    os.chmod(tmp, 0o755)
    try:
        if raw.file is not None and raw.file.parent.resolve() == root.resolve():
            os.replace(raw.file, tmp / "images.npy")  # same file system: a rename
            os.chmod(tmp / "images.npy", 0o644)
        else:
            np.save(tmp / "images.npy", raw.images)
        for key, array in {"train": train, "holdout": hold, "labels": raw.labels}.items():
            if array is not None:
                np.save(tmp / f"{key}.npy", array)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (folder / "meta.json").exists():  # a concurrent run wrote the same snapshot first
            return _from_meta(folder), False
        raise
    return _from_meta(folder), True


def _index_file(root: Path, key: str, holdout: float, seed: int) -> Path:
    return root / "by-source" / f"{key[:32]}-h{round(holdout * 100)}-s{seed}.json"


def lookup(root: Path, key: str | None, holdout: float = 0.2, seed: int = 0) -> Snapshot | None:
    """The snapshot already made from a source whose raw content has sha256 ``key``, if it is
    still complete on disk; None otherwise (then the source must be read)."""
    if key is None:
        return None
    entry = _index_file(root, key, holdout, seed)
    try:
        folder = root / json.loads(entry.read_text())["snapshot"]
        snap = _from_meta(folder)
    except (OSError, ValueError, KeyError):
        return None
    return snap if (folder / "images.npy").exists() or (folder / "data.npz").exists() else None


def remember(root: Path, key: str | None, snap: Snapshot, holdout: float = 0.2, seed: int = 0) -> None:
    """Record that raw source content ``key`` gave ``snap`` (atomic; a later ``lookup`` finds it)."""
    if key is None:
        return
    entry = _index_file(root, key, holdout, seed)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"snapshot": Path(snap.path).name, "source_key": key}))
    os.replace(tmp, entry)


def find(root: Path, fingerprint: str) -> Snapshot | None:
    """A complete snapshot of content ``fingerprint`` under ``root`` (any split), or None."""
    for folder in sorted(root.glob(f"{fingerprint[:16]}-*")):
        try:
            snap = _from_meta(folder)
        except (OSError, ValueError, KeyError):
            continue
        if snap.fingerprint == fingerprint and ((folder / "images.npy").exists() or (folder / "data.npz").exists()):
            return snap
    return None


def _from_meta(folder: Path) -> Snapshot:
    m = json.loads((folder / "meta.json").read_text())
    return Snapshot(str(folder), m["fingerprint"], m["source"], tuple(m["shape"]), m["num_images"],
                    m["num_classes"], m["num_train"], m["num_holdout"])


def as_dict(s: Snapshot) -> dict:
    return asdict(s)
