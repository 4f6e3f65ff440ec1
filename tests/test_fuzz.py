"""Property-based fuzzing of what reads untrusted bytes: the IDX, NPZ and image-folder readers
and the catalog's manifest parsing. Random and mutated inputs give a valid result or the
documented error type (``SourceError``, ``CatalogError``), never another exception, a hang or
a huge allocation from a forged header."""

import gzip
import io
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import catalog
from catalog.store import CatalogError
from snapshots import sources
from snapshots.sources import SourceError
from tests.idx import idx_bytes


@pytest.fixture(autouse=True)
def modules_only_in_sys_modules():
    """Hypothesis reads ``__file__`` of everything in ``sys.modules`` to collect constants and
    fails on an entry that is not a module (a library's stand-in). Hide such entries while
    fuzzing; ``tests/test_flow.py`` checks that ganvirt itself leaves none behind."""
    odd = {k: m for k, m in list(sys.modules.items()) if not isinstance(m, types.ModuleType)}
    for k in odd:
        del sys.modules[k]
    yield
    sys.modules.update(odd)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_IDX = idx_bytes(np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:cut] if cut is not None else b)


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)
CUT = st.one_of(st.none(), st.integers(0, 200))


def read_or_refuse(filename: str, data: bytes, reader):
    """``reader(path)`` of ``data`` saved as ``filename``; None when it refused with SourceError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        try:
            return reader(path)
        except SourceError:
            return None


def check_idx(data: bytes) -> None:
    a = read_or_refuse("x-images-idx3-ubyte", data, sources.read_idx)
    assert a is None or (a.dtype == np.uint8 and a.size <= sources.MAX_IDX_BYTES)


@FUZZ
@given(st.binary(max_size=300))
def test_idx_random_bytes(data):
    check_idx(data)
    check_idx(b"\x1f\x8b" + data)  # claims to be gzip


@FUZZ
@given(EDITS, CUT, st.booleans())
def test_idx_mutated(edits, cut, compress):
    data = mutate(VALID_IDX, edits, cut)
    check_idx(gzip.compress(data) if compress else data)
    check_idx(mutate(gzip.compress(VALID_IDX), edits, cut))


@FUZZ
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4))
def test_idx_forged_header_is_refused_before_allocating(dims):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    check_idx(header + b"\x00" * 64)  # a header that declares up to 2^128 bytes: an error, fast


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


VALID_NPZ = npz_bytes(images=np.zeros((6, 1, 4, 4), np.uint8), labels=np.arange(6) % 2)


def check_npz(data: bytes) -> None:
    raw = read_or_refuse("x.npz", data, sources.read_npz)
    assert raw is None or (raw.images.dtype == np.uint8 and raw.images.ndim == 4)


@FUZZ
@given(st.binary(max_size=400))
def test_npz_random_bytes(data):
    check_npz(data)
    check_npz(b"PK\x03\x04" + data)  # claims to be a zip


@FUZZ
@given(EDITS, st.one_of(st.none(), st.integers(0, 800)))
def test_npz_mutated(edits, cut):
    check_npz(mutate(VALID_NPZ, edits, cut))


ARRAYS = st.sampled_from([
    np.zeros((3, 4, 4), np.float32), np.full((2, 1, 3, 3), np.inf), np.zeros((2, 5), np.int16),
    np.array(["a", "b"]), np.zeros((0, 1, 2, 2), np.uint8), np.zeros((2, 2, 2, 2, 2), np.uint8),
    np.ones((4, 3, 2, 2), np.float64) * -1, np.zeros((3, 2, 2), np.bool_)])


@FUZZ
@given(ARRAYS, st.one_of(st.none(), ARRAYS, st.just(np.array([0.5, 1.5])), st.just(np.array([-1, 2]))))
def test_npz_odd_arrays(images, labels):
    check_npz(npz_bytes(images=images, **({"labels": labels} if labels is not None else {})))


def png_bytes(size=(4, 4), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), st.builds(mutate, st.just(png_bytes()), EDITS, CUT)),
                min_size=1, max_size=5))
def test_image_folder_with_damaged_files(blobs):
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(2):
            (Path(tmp) / f"c{c}").mkdir()
            (Path(tmp) / f"c{c}" / "ok.png").write_bytes(png_bytes())
        for i, blob in enumerate(blobs):
            (Path(tmp) / f"c{i % 2}" / f"f{i}.png").write_bytes(blob)
        try:
            raw = sources.read_image_folder(Path(tmp))
        except SourceError:
            return
        assert raw.images.dtype == np.uint8 and len(raw.images) == len(raw.labels)


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                       max_leaves=12)


@FUZZ
@given(st.one_of(st.binary(max_size=200).map(lambda b: b.decode("latin-1")), JSONISH.map(json.dumps),
                 st.dictionaries(st.sampled_from(["files", "name", "version", "format", "virtual"]), JSONISH)
                 .map(json.dumps),
                 st.dictionaries(st.text(max_size=30), st.text(max_size=70), max_size=4)
                 .map(lambda f: json.dumps({"files": f}))))
def test_manifest_parsing(text):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            m = catalog.manifest(tmp)
        except CatalogError:
            return
        assert isinstance(m, dict) and isinstance(m["files"], dict)
        for rel in m["files"]:
            assert not rel.startswith("/") and ".." not in rel.split("/")
        try:
            catalog.verify(tmp)
        except CatalogError:
            pass
