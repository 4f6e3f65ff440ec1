"""The on-disk formats of a published dataset, each written into a local folder and read back to
the same arrays (uint8 images (N, C, H, W), int64 labels (N,) or None):

- ``npz``: ``data.npz`` with ``images`` and ``labels`` (read with ``allow_pickle=False``);
- ``png``: ``images/<label>/<index>.png`` (``images/<index>.png`` when unlabelled) and
  ``labels.csv`` (``file,label``) listing every image in index order;
- ``parquet``: ``data.parquet``, one row per image: ``index``, ``label`` and ``png`` (the
  image as PNG bytes, so any tool that reads Parquet and PNG gets the pixels back exactly).

``content_sha256`` hashes the arrays, not a file: the same images and labels have the same
digest in every format, which is what a virtual dataset records.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np

FORMATS = ("npz", "png", "parquet")


class FormatError(ValueError):
    """A file that does not hold what its format promises."""


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise FormatError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt


def content_sha256(images: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.sha256(f"ganvirt-content-v1 {list(images.shape)} {labels is not None}".encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def write(fmt: str, folder: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    {"npz": _write_npz, "png": _write_png, "parquet": _write_parquet}[check_format(fmt)](Path(folder), images, labels)


def read(fmt: str, folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    return {"npz": _read_npz, "png": _read_png, "parquet": _read_parquet}[check_format(fmt)](Path(folder))


# ---------------------------------------------------------------- npz

def _write_npz(folder: Path, images, labels) -> None:
    """Like ``np.savez_compressed``, but with fixed zip timestamps: the same arrays give the
    same bytes whenever and wherever they are written (so pulls of one version are identical)."""
    import zipfile

    arrays = {"images": np.ascontiguousarray(images, dtype=np.uint8)}
    if labels is not None:
        arrays["labels"] = np.ascontiguousarray(labels, dtype=np.int64)
    with zipfile.ZipFile(folder / "data.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)


def _read_npz(folder: Path):
    with np.load(folder / "data.npz", allow_pickle=False) as z:
        if "images" not in z.files:
            raise FormatError(f"{folder / 'data.npz'}: no 'images' array")
        return z["images"], (z["labels"].astype(np.int64) if "labels" in z.files else None)


# ---------------------------------------------------------------- png

def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    c = image.shape[0]
    pic = Image.fromarray(image[0] if c == 1 else np.moveaxis(image, 0, -1))
    buf = io.BytesIO()
    pic.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _png_array(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as pic:
            a = np.asarray(pic)
    except Exception as exc:  # PIL raises many types for bad bytes
        raise FormatError(f"{where}: not a readable PNG ({exc})") from None
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


PARALLEL_MIN = 2_000  # images below which PNG work stays in this process


def _workers(n: int) -> int:
    return 1 if n < PARALLEL_MIN else max(1, min(os.cpu_count() or 1, 16))


def _write_png_files(folder: str, rels: list[str], images: np.ndarray) -> None:
    for rel, image in zip(rels, images):
        (Path(folder) / rel).write_bytes(_png_bytes(image))


def _read_png_files(folder: str, rels: list[str]) -> np.ndarray:
    return np.stack([_png_array((Path(folder) / rel).read_bytes(), str(Path(folder) / rel)) for rel in rels])


def _encode_many(images: np.ndarray) -> list[bytes]:
    return [_png_bytes(im) for im in images]


def _decode_many(blobs: list[bytes], where: str) -> np.ndarray:
    return np.stack([_png_array(b, f"{where} row {i}") for i, b in enumerate(blobs)])


def _parallel(fn, n: int, args_for) -> list:
    """``fn(*args_for(lo, hi))`` over chunks of ``range(n)``, in processes when n is large."""
    workers = _workers(n)
    if workers == 1:
        return [fn(*args_for(0, n))]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, *zip(*[args_for(lo, hi) for lo, hi in _chunks(n, workers * 4)])))


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _write_png(folder: Path, images, labels) -> None:
    width = max(6, len(str(len(images))))
    rels = [f"images/{int(labels[i])}/{i:0{width}d}.png" if labels is not None else f"images/{i:0{width}d}.png"
            for i in range(len(images))]
    for parent in {str((folder / rel).parent) for rel in rels}:
        Path(parent).mkdir(parents=True, exist_ok=True)
    # PNG encoding is CPU work in Python: large datasets are spread over processes
    _parallel(_write_png_files, len(images), lambda lo, hi: (str(folder), rels[lo:hi], images[lo:hi]))
    rows = [(rel, int(labels[i]) if labels is not None else "") for i, rel in enumerate(rels)]
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"])
        w.writerows(rows)


def _read_png(folder: Path):
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise FormatError(f"{folder / 'labels.csv'}: no images listed")
    rels = [r["file"] for r in rows]
    for rel in rels:
        if not rel or rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
            raise FormatError(f"{folder / 'labels.csv'}: file {rel!r} points outside the dataset")
    images = np.concatenate(_parallel(_read_png_files, len(rels), lambda lo, hi: (str(folder), rels[lo:hi])))
    labelled = rows[0]["label"] != ""
    try:
        labels = np.array([int(r["label"]) for r in rows], dtype=np.int64) if labelled else None
    except (TypeError, ValueError):
        raise FormatError(f"{folder / 'labels.csv'}: labels must be integers") from None
    return images.astype(np.uint8), labels


# ---------------------------------------------------------------- parquet

def _write_parquet(folder: Path, images, labels) -> None:
    import pandas as pd

    frame = pd.DataFrame({"index": np.arange(len(images), dtype=np.int64),
                          "label": labels if labels is not None else pd.array([None] * len(images), dtype="Int64"),
                          "png": [b for part in _parallel(_encode_many, len(images), lambda lo, hi: (images[lo:hi],))
                                  for b in part]})
    frame.to_parquet(folder / "data.parquet", index=False)


def _read_parquet(folder: Path):
    import pandas as pd

    frame = pd.read_parquet(folder / "data.parquet")
    missing = {"index", "label", "png"} - set(frame.columns)
    if missing:
        raise FormatError(f"{folder / 'data.parquet'}: missing column(s) {sorted(missing)}")
    frame = frame.sort_values("index")
    blobs = list(frame["png"])
    images = np.concatenate(_parallel(_decode_many, len(blobs),
                                      lambda lo, hi: (blobs[lo:hi], str(folder / "data.parquet"))))
    labels = None if frame["label"].isna().all() else frame["label"].astype(np.int64).to_numpy()
    return images.astype(np.uint8), labels
