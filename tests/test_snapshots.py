"""Snapshots: fingerprint, stratified deterministic split, cache, validation."""

import numpy as np
import pytest

from snapshots import store as snapshots
from snapshots.sources import RawData, SourceError


def raw(n=100, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return RawData(rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8),
                   (np.arange(n) % classes).astype(np.int64))


def test_split_is_stratified_deterministic_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    tr, ho = snapshots.stratified_split(labels, 100, 0.2, seed=0)
    tr2, ho2 = snapshots.stratified_split(labels, 100, 0.2, seed=0)
    np.testing.assert_array_equal(ho, ho2)
    assert len(set(tr) & set(ho)) == 0 and len(tr) + len(ho) == 100
    assert np.bincount(labels[ho]).tolist() == [2, 4, 6, 8]
    _, ho3 = snapshots.stratified_split(labels, 100, 0.2, seed=1)
    assert not np.array_equal(ho, ho3)


def test_create_caches_by_content(tmp_path):
    a, created = snapshots.create(raw(), "x", tmp_path)
    b, again = snapshots.create(raw(), "x", tmp_path)
    c, _ = snapshots.create(raw(seed=1), "x", tmp_path)
    assert created and not again and a == b
    assert c.fingerprint != a.fingerprint
    data = a.load()
    assert data["images"].shape == (100, 1, 4, 4) and len(data["holdout"]) == 20
    assert not list(tmp_path.glob(".tmp-*"))


def test_file_format_1_snapshots_still_load(tmp_path):
    """Snapshots written before file format 2 (one data.npz) load as before, with their
    fingerprint: lineage recorded against them stays valid."""
    snap, _ = snapshots.create(raw(), "x", tmp_path)
    folder = tmp_path / snap.path.rsplit("/", 1)[-1]
    new = snap.load()
    np.savez(folder / "data.npz", **{k: np.asarray(v) for k, v in new.items() if v is not None})
    for f in folder.glob("*.npy"):
        f.unlink()
    old = snapshots.lookup(tmp_path, "k") or snap
    for key, value in old.load().items():
        np.testing.assert_array_equal(value, new[key])
    assert snapshots.fingerprint(old.load()["images"], old.load()["labels"]) == snap.fingerprint


def test_fingerprint_sees_labels():
    r = raw()
    assert snapshots.fingerprint(r.images, r.labels) != snapshots.fingerprint(r.images, r.labels[::-1].copy())
    assert snapshots.fingerprint(r.images, None) != snapshots.fingerprint(r.images, r.labels)


@pytest.mark.parametrize("n,holdout,message", [(3, 0.2, "too few"), (100, 1.5, "between 0 and 1")])
def test_validation(tmp_path, n, holdout, message):
    with pytest.raises(SourceError, match=message):
        snapshots.create(raw(n=n), "x", tmp_path, holdout=holdout)


def test_source_content_key_finds_the_snapshot_until_the_content_changes(tmp_path):
    from snapshots import sources

    src = tmp_path / "src.npz"
    r = raw()
    np.savez(src, images=r.images, labels=r.labels)
    root = tmp_path / "snaps"
    key = sources.content_key(str(src))
    assert key == sources.content_key(str(src)) and snapshots.lookup(root, key) is None
    snap, _ = snapshots.create(sources.read(str(src), tmp_path), str(src), root)
    snapshots.remember(root, key, snap)
    assert snapshots.lookup(root, key) == snap
    assert snapshots.lookup(root, key, holdout=0.3) is None  # another split is another snapshot
    np.savez(src, images=r.images, labels=r.labels[::-1].copy())
    assert sources.content_key(str(src)) != key
    (root / snap.path.rsplit("/", 1)[-1] / "images.npy").unlink()  # a damaged cache is not trusted
    assert snapshots.lookup(root, key) is None
    assert sources.content_key("http://127.0.0.1/x-images-idx3-ubyte.gz") is None
    assert sources.content_key("digits") == sources.content_key("digits")
