"""Image folders read like a dataset tool: any size and mode in, one size and channel count out.

A folder is labelled by one sub-folder per class, or by a ``labels.csv`` (``file,label``) at its
root; a flat folder is unlabelled. Every image gets its EXIF orientation, is brought to 8 bits
(16-bit grey scaled, alpha composited over white, palette/CMYK converted), then resized and
centre-cropped to the target size (PIL's ``ImageOps.fit``). Decoding runs in worker processes
and streams, chunk by chunk, into a memory-mapped ``.npy``: no image is held as a Python object.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_IMAGE_PIXELS = 1 << 24     # per image, checked from the header before decoding (4096 x 4096)
DEFAULT_MAX_SIDE = 128         # without --image-size, mixed sizes come to the commonest, at most this
LABELS_CSV = "labels.csv"
CHUNK = 256                    # images per worker task
SERIAL_BELOW = 512             # smaller folders decode in this process (no worker start-up)
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
COLOUR_TOLERANCE = 8           # channel differences up to this are grey (JPEG rounding)


class ImageError(ValueError):
    """An image folder that cannot become a snapshot (``SourceError`` wraps it)."""


@dataclass(frozen=True)
class ImageOptions:
    """How a folder's images become one array; None picks from the data."""
    size: tuple[int, int] | None = None   # (height, width)
    channels: int | None = None           # 1 or 3; None: 3 when any image has colour
    max_undecodable: float = 0.0          # share of files that may fail to decode, skipped

    def key(self) -> str:
        """Part of the snapshot cache key: other options make another snapshot."""
        return f"size={self.size} channels={self.channels} max_undecodable={self.max_undecodable}"


def parse_size(text: str) -> tuple[int, int]:
    """``64`` → (64, 64); ``48x64`` → (48, 64) as height x width."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", str(text))
    if not m or not all(1 <= int(v) <= 4096 for v in m.groups() if v):
        raise ValueError(f"image size {text!r}: expected N or HxW with sides from 1 to 4096, e.g. 64 or 48x64")
    h = int(m[1])
    return h, int(m[2] or h)


@dataclass
class Listing:
    files: list[Path]
    labels: np.ndarray | None
    classes: list[str] | None
    notes: list[str]


def list_folder(root: Path) -> Listing:
    """The image files of ``root`` in a fixed order, with labels from class folders or
    ``labels.csv``; non-image files are skipped with a note."""
    if (root / LABELS_CSV).is_file():
        return _listing_from_csv(root)
    top = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders = [p for p in top if p.is_dir()]
    loose = [p for p in top if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if folders and loose:
        raise ImageError(f"{root}: has both images ({loose[0].name}, …) and sub-folders ({folders[0].name}, …) at the top; "
                         "expected class sub-folders only (labelled) or images only (unlabelled)")
    notes: list[str] = []
    if not folders:
        files = _images_under(root, notes, recursive=False)
        return Listing(files, None, None, notes)
    files, labels = [], []
    for k, folder in enumerate(folders):
        found = _images_under(folder, notes, recursive=True)
        files += found
        labels += [k] * len(found)
    return Listing(files, np.asarray(labels, dtype=np.int64), [p.name for p in folders], notes)


def _images_under(folder: Path, notes: list[str], recursive: bool) -> list[Path]:
    paths = sorted(folder.rglob("*") if recursive else folder.iterdir())
    files = [p for p in paths if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and p.name != LABELS_CSV]
    if others:
        notes.append(f"skipped {len(others)} file(s) that are not images ({', '.join(p.name for p in others[:3])}"
                     f"{', …' if len(others) > 3 else ''}; expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def _listing_from_csv(root: Path) -> Listing:
    path = root / LABELS_CSV
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise ImageError(f"{path}: expected a header with columns 'file' and 'label', found {reader.fieldnames}")
        rows = [(r["file"] or "", (r["label"] or "").strip()) for r in reader]
    for i, (name, label) in enumerate(rows, start=2):
        if not name or not label:
            raise ImageError(f"{path}: line {i}: empty 'file' or 'label'")
        if not (root / name).is_file():
            raise ImageError(f"{path}: line {i}: {name!r} is not a file under {root}")
    names = sorted({label for _, label in rows}, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    index = {c: k for k, c in enumerate(names)}
    return Listing([root / name for name, _ in rows], np.asarray([index[lb] for _, lb in rows], dtype=np.int64),
                   names, [])


# ---------------------------------------------------------------- decoding (worker side)

def _probe(path: Path) -> tuple[int, int, str] | str:
    """(height, width as displayed, mode) from the header, or why it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                return f"{w}x{h} pixels, over the {MAX_IMAGE_PIXELS}-pixel limit"
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that turn by 90°
                w, h = h, w
            return h, w, im.mode
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError… for damaged files
        return f"{type(exc).__name__}: {exc}"


def _eight_bit(im, channels: int):
    """Any PIL mode → 'L' or 'RGB': 16-bit and float grey scaled, transparency over white."""
    from PIL import Image

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im, dtype=np.float64)
        top = 1.0 if im.mode == "F" and a.max(initial=0) <= 1 else (255.0 if a.max(initial=0) <= 255 else 65535.0)
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    elif im.mode == "P" or im.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im).convert("RGB")
    return im.convert("L" if channels == 1 else "RGB")


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file → uint8 (channels, height, width), oriented, converted, resized and cropped."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = _eight_bit(ImageOps.exif_transpose(im), channels)
        if im.size != (size[1], size[0]):
            im = ImageOps.fit(im, (size[1], size[0]), method=Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _decode_chunk(paths: list[Path], size: tuple[int, int], channels: int) -> tuple[np.ndarray, list[tuple[Path, str]], bool]:
    """(decoded images in order, (file, reason) of each failure, whether any image has colour)."""
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    failed, n, colour = [], 0, False
    for p in paths:
        try:
            out[n] = decode(p, size, channels)
        except Exception as exc:
            failed.append((p, f"{type(exc).__name__}: {exc}"))
            continue
        if channels == 3 and not colour:
            d = out[n].astype(np.int16)
            colour = bool(np.abs(d[0] - d[1]).max() > COLOUR_TOLERANCE or np.abs(d[1] - d[2]).max() > COLOUR_TOLERANCE)
        n += 1
    return out[:n], failed, colour


def _probe_chunk(paths: list[Path]) -> list[tuple[int, int, str] | str]:
    return [_probe(p) for p in paths]


# ---------------------------------------------------------------- the folder (parent side)

@dataclass
class Decoded:
    images: np.ndarray           # uint8 (N, C, H, W), memory-mapped from ``file``
    file: Path                   # the .npy under the scratch folder; the snapshot store moves it
    labels: np.ndarray | None
    classes: list[str] | None
    notes: list[str]


def read_folder(root: Path, options: ImageOptions, scratch: Path, workers: int | None = None) -> Decoded:
    """Decode every image of ``root`` into ``scratch/*.npy`` (see the module docstring), in
    ``workers`` processes (default: one per core for folders of ``SERIAL_BELOW`` files or more)."""
    listing = list_folder(root)
    n = len(listing.files)
    if not n:
        raise ImageError(f"{root}: no image files (the folder is empty or holds none of "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}, flat or in class sub-folders)")
    chunks = [listing.files[i:i + CHUNK] for i in range(0, n, CHUNK)]
    with _pool(n, workers) as pool:
        probes = [r for rs in _ordered(pool, _probe_chunk, [(c,) for c in chunks], n, "read headers") for r in rs]
        failed = [(p, r) for p, r in zip(listing.files, probes) if isinstance(r, str)]
        _check_share(root, failed, n, options.max_undecodable)  # fail before decoding when already over
        headers = [r for r in probes if not isinstance(r, str)]
        size, size_note = _pick_size(headers, options.size)
        auto_grey = options.channels is None and all(mode in GREY_MODES for _, _, mode in headers)
        channels = options.channels or (1 if auto_grey else 3)
        readable = [p for p, r in zip(listing.files, probes) if not isinstance(r, str)]
        fd, name = tempfile.mkstemp(prefix=".decode-", suffix=".npy", dir=scratch)
        os.close(fd)
        file = Path(name)
        try:
            out = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(len(readable), channels, *size))
            kept, colour = _decode_into(pool, out, readable, size, channels, failed)
            _check_share(root, failed, n, options.max_undecodable)
            to_grey = options.channels is None and channels == 3 and not colour
            out = _compact(file, out, len(kept), to_grey)
        except BaseException:
            file.unlink(missing_ok=True)
            raise
    index = {p: i for i, p in enumerate(listing.files)}
    labels = listing.labels[[index[p] for p in kept]] if listing.labels is not None else None
    notes = listing.notes + ([size_note] if size_note else [])
    if failed:
        notes.append(f"skipped {len(failed)} of {n} file(s) that cannot be decoded ({len(failed) / n:.2%}, within "
                     f"--max-undecodable {options.max_undecodable:g}): " + _first(failed))
    if to_grey:
        notes.append("every image is grey (R = G = B): stored with 1 channel (--channels 3 keeps three)")
    return Decoded(out, file, labels, listing.classes, notes)


def _decode_into(pool: _pool, out: np.ndarray, files: list[Path], size, channels, failed: list) -> tuple[list[Path], bool]:
    """Stream the decoded chunks into ``out`` in file order; undecodable files are appended to
    ``failed`` and leave no row. Returns (files kept, whether any has colour)."""
    chunks = [files[i:i + CHUNK] for i in range(0, len(files), CHUNK)]
    kept, at, colour = [], 0, False
    for paths, (images, bad, has_colour) in zip(chunks, _ordered(pool, _decode_chunk, [(c, size, channels) for c in chunks],
                                                             len(files), "decode images")):
        out[at:at + len(images)] = images
        at += len(images)
        failed += bad
        dropped = {p for p, _ in bad}
        kept += [p for p in paths if p not in dropped]
        colour |= has_colour
    return kept, colour


def _compact(file: Path, out: np.ndarray, count: int, to_grey: bool) -> np.ndarray:
    """``out`` with only its first ``count`` rows, and as luminance when ``to_grey``: rewritten
    chunk by chunk when either changes it; reopened read-only."""
    if count == len(out) and not to_grey:
        out.flush()
        del out
        return np.load(file, mmap_mode="r")
    shape = (count, 1 if to_grey else out.shape[1], *out.shape[2:])
    tmp = file.with_name(file.name + ".tmp.npy")
    new = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    for i in range(0, count, 4096):
        block = out[i:min(i + 4096, count)]
        if to_grey:  # ITU-R 601 luma, as PIL's convert("L")
            w = block.astype(np.uint32)
            block = ((w[:, 0] * 299 + w[:, 1] * 587 + w[:, 2] * 114 + 500) // 1000).astype(np.uint8)[:, None]
        new[i:i + len(block)] = block
    new.flush()
    del new, out
    os.replace(tmp, file)
    return np.load(file, mmap_mode="r")


def _pick_size(headers: list[tuple[int, int, str]], asked: tuple[int, int] | None) -> tuple[tuple[int, int], str]:
    """The target (height, width) and a note saying how it was chosen (empty when obvious)."""
    if asked:
        return asked, ""
    sizes = Counter((h, w) for h, w, _ in headers)
    (h, w), count = sizes.most_common(1)[0]
    scale = min(1.0, DEFAULT_MAX_SIDE / max(h, w))
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    if len(sizes) == 1 and scale == 1:
        return target, ""
    why = f"{len(sizes)} image sizes; the commonest is {h}x{w} ({count} images)" if len(sizes) > 1 else f"images are {h}x{w}"
    cap = f", scaled to at most {DEFAULT_MAX_SIDE} px a side" if scale < 1 else ""
    return target, f"{why}{cap}: every image resized and centre-cropped to {target[0]}x{target[1]} (set --image-size)"


def _check_share(root: Path, failed: list[tuple[Path, str]], n: int, limit: float) -> None:
    if failed and len(failed) / n > limit:
        raise ImageError(f"{root}: {len(failed)} of {n} file(s) cannot be decoded ({len(failed) / n:.2%}, over "
                         f"--max-undecodable {limit:g}): " + _first(failed))


def _first(failed: list[tuple[Path, str]], k: int = 3) -> str:
    shown = "; ".join(f"{p.name} ({reason})" for p, reason in failed[:k])
    return shown + (f"; and {len(failed) - k} more" if len(failed) > k else "")


class _pool:
    """Worker processes for folders worth it, else none. Forked where the platform can (as
    torch's DataLoader does): a spawned worker re-imports the caller's ``__main__``, which re-runs
    an unguarded script's flow and fails for ``python -`` and notebooks. The workers only run
    numpy and PIL. (Threads do not help: measured 0.99x serial on 2 cores, fork 1.38x.)"""

    def __init__(self, n: int, workers: int | None = None):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = min(workers or cores, -(-n // CHUNK)) if n >= SERIAL_BELOW else 1

    def __enter__(self):
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        self.executor = (ProcessPoolExecutor(self.workers, mp_context=get_context(method))
                         if self.workers > 1 else None)
        return self

    def __exit__(self, *exc):
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)


def _ordered(pool: _pool, fn, arg_list: list[tuple], total: int, desc: str):
    """``fn(*args)`` for each args, in order, at most 2 chunks per worker in flight, with a
    progress bar counted in files."""
    from collections import deque

    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="img", unit_scale=True, mininterval=2.0, disable=total < SERIAL_BELOW) as bar:
        if pool.executor is None:
            for args in arg_list:
                yield fn(*args)
                bar.update(len(args[0]))
            return
        pending: deque = deque()
        todo = iter(arg_list)
        for args in todo:
            pending.append((len(args[0]), pool.executor.submit(fn, *args)))
            if len(pending) >= 2 * pool.workers:
                break
        while pending:
            size, future = pending.popleft()
            result = future.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((len(nxt[0]), pool.executor.submit(fn, *nxt)))
            bar.update(size)
            yield result
