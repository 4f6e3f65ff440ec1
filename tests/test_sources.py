"""Source readers: digits, IDX (folder, files, http), NPZ, image folders, and their errors."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapshots import sources
from snapshots.sources import SourceError
from tests.conftest import MNIST
from tests.idx import idx_bytes, write_idx, write_pair


def test_digits():
    raw = sources.read("digits", downloads=None)
    assert raw.images.shape == (1797, 1, 8, 8) and raw.images.dtype == np.uint8
    assert raw.images.max() == 255 and set(raw.labels) == set(range(10))


def test_idx_folder_pairs_by_prefix_and_skips_unpaired(tmp_path):
    xa, ya = write_pair(tmp_path, "t10k", 10)
    xb, yb = write_pair(tmp_path, "train", 6, seed=1)
    write_idx(tmp_path / "extra-labels-idx1-ubyte.gz", np.zeros(4))
    raw = sources.read(str(tmp_path), tmp_path / "dl")
    assert raw.images.shape == (16, 1, 8, 8)
    np.testing.assert_array_equal(raw.images[:10, 0], xa)       # pairs in prefix order
    np.testing.assert_array_equal(raw.labels[10:], yb)
    assert raw.notes == ["skipped extra-labels-idx1-ubyte.gz: no matching extra-images file"]


def test_idx_files_raw_and_gzip(tmp_path):
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    a = write_idx(tmp_path / "a-images-idx3-ubyte", x, compress=False)
    b = write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.array([1, 0]))
    raw = sources.read(f"{a},{b}", tmp_path)
    np.testing.assert_array_equal(raw.images[:, 0], x)
    assert raw.labels.tolist() == [1, 0]


@pytest.mark.parametrize("content,message", [
    (b"\x00\x00\x0d\x03" + b"\x00" * 12, "data type 0x0d"),
    (b"\x01\x02\x08\x03", "bad magic"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (idx_bytes(np.zeros((3, 4, 4)))[:-5], "truncated IDX data"),
    (b"\x00\x00\x08\x03" + (2**30).to_bytes(4, "big") * 3, "over the"),
])
def test_bad_idx_names_the_file(tmp_path, content, message):
    p = tmp_path / "x-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(content))
    with pytest.raises(SourceError, match=message) as err:
        sources.read_idx(p)
    assert str(p) in str(err.value)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x-images-idx3-ubyte.gz"
    p.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(SourceError, match="cannot read"):
        sources.read_idx(p)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "t-images-idx3-ubyte.gz", np.zeros((3, 4, 4)))
    write_idx(tmp_path / "t-labels-idx1-ubyte.gz", np.zeros(2))
    with pytest.raises(SourceError, match="has 3 images but .* has 2 labels"):
        sources.read(str(tmp_path), tmp_path)


def test_npz_variants(tmp_path):
    x = np.random.default_rng(0).random((5, 6, 6, 3))
    np.savez(tmp_path / "a.npz", images=x, labels=np.array([0, 1, 2, 1, 0]))
    raw = sources.read(str(tmp_path / "a.npz"), tmp_path)
    assert raw.images.shape == (5, 3, 6, 6) and raw.images.dtype == np.uint8
    np.savez(tmp_path / "b.npz", images=np.zeros((4, 5, 5), dtype=np.uint8))
    assert sources.read(str(tmp_path / "b.npz"), tmp_path).labels is None


@pytest.mark.parametrize("arrays,message", [
    ({"images": np.full((2, 4, 4), np.nan)}, "NaN"),
    ({"images": np.full((2, 4, 4), 2.0)}, r"\[0, 1\]"),
    ({"pixels": np.zeros((2, 4, 4))}, "no 'images'"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0.5, 1.0])}, "expected integers"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, -1])}, "negative label"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 1, 1])}, r"expected \(2,\)"),
])
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SourceError, match=message):
        sources.read(str(tmp_path / "bad.npz"), tmp_path)


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(6, 5), mode="L"):
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new(mode, size, color=(40 * k + i) if mode == "L" else (k, i, 9)).save(root / cls / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    raw = sources.read(str(make_folder(tmp_path / "imgs")), tmp_path)
    assert raw.images.shape == (6, 1, 5, 6) and raw.classes == ["cat", "dog"]
    assert raw.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_errors(tmp_path):
    root = make_folder(tmp_path / "imgs")
    Image.new("L", (7, 7)).save(root / "loose.png")
    with pytest.raises(SourceError, match="loose.png.*expected class sub-folders only"):
        sources.read(str(root), tmp_path)
    (root / "loose.png").unlink()
    (root / "dog" / "big.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SourceError, match="cannot be decoded.*big.png"):
        sources.read(str(root), tmp_path)


def test_missing_source(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        sources.read(str(tmp_path / "nope"), tmp_path)


def test_idx_over_http(http_folder, tmp_path):
    www, base = http_folder
    x, y = write_pair(www, "t10k", 12)
    src = f"{base}/t10k-images-idx3-ubyte.gz,{base}/t10k-labels-idx1-ubyte.gz"
    raw = sources.read(src, tmp_path / "dl")
    np.testing.assert_array_equal(raw.images[:, 0], x)
    np.testing.assert_array_equal(raw.labels, y)
    # fetched once: a second read works with the server's files gone
    for p in www.iterdir():
        p.unlink()
    assert sources.read(src, tmp_path / "dl").images.shape == (12, 1, 8, 8)


def test_http_404_and_refused(http_folder, tmp_path):
    _, base = http_folder
    with pytest.raises(SourceError, match="HTTP 404"):
        sources.read(f"{base}/missing-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(SourceError, match="cannot fetch"):
        sources.fetch("http://127.0.0.1:9/x-images-idx3-ubyte.gz", tmp_path, timeout=5)


@pytest.mark.skipif(not MNIST.is_dir(), reason="real MNIST files not present")
def test_real_mnist_folder():
    raw = sources.read(str(MNIST), downloads=None)
    assert raw.images.shape == (10_000, 1, 28, 28)
    assert np.bincount(raw.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert any("train-labels" in n for n in raw.notes) and any("README" in n for n in raw.notes)


def test_credentials_in_urls_are_never_recorded(http_folder):
    """A token in a source URL reaches the server but not the snapshot, its log or its name."""
    from flows.params import name_from_source
    from tasks.ingest import ingest

    www, base = http_folder
    write_pair(www, "tok", 30)
    src = f"{base}/tok-images-idx3-ubyte.gz?token=SECRET1,{base}/tok-labels-idx1-ubyte.gz?X-Amz-Signature=SECRET2"
    snap = ingest.fn(src)
    meta = (Path(snap.path) / "meta.json").read_text()
    assert "SECRET" not in snap.source and "SECRET" not in meta and "token=***" in snap.source
    assert "SECRET" not in name_from_source(src) and name_from_source(src) == "tok"
    assert sources.redact("https://alice:pw@host/x?key=abc&n=1") == "https://***@host/x?key=***&n=1"
    with pytest.raises(sources.SourceError) as err:
        sources.read(f"{base}/missing-images-idx3-ubyte.gz?token=SECRET3", www / "dl")
    assert "SECRET3" not in str(err.value) and "token=***" in str(err.value)
