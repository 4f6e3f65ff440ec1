"""The catalog: atomic immutable versions, racing publishers, pull with verification."""

import json
import threading

import numpy as np
import pytest

import catalog
from catalog.store import CatalogError


def write_npz(images):
    return lambda folder: np.savez(folder / "data.npz", images=images, labels=np.zeros(len(images), np.int64))


def test_publish_versions_and_manifest(tmp_path):
    a = catalog.publish(tmp_path, "ds", write_npz(np.zeros((3, 1, 2, 2), np.uint8)), {"seed": 1})
    b = catalog.publish(tmp_path, "ds", write_npz(np.ones((3, 1, 2, 2), np.uint8)), {"seed": 2})
    assert (a.name, b.name) == ("1", "2")
    m = catalog.manifest(b)
    assert m["name"] == "ds" and m["version"] == 2 and m["seed"] == 2 and set(m["files"]) == {"data.npz"}
    assert catalog.names(tmp_path) == ["ds"] and catalog.versions_of(tmp_path / "ds") == [1, 2]
    images, labels = catalog.load(tmp_path, "ds", 1)
    assert images.sum() == 0 and labels.shape == (3,)


def test_failed_write_leaves_nothing(tmp_path):
    def broken(folder):
        (folder / "half.npz").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        catalog.publish(tmp_path, "ds", broken, {})
    assert catalog.versions_of(tmp_path / "ds") == []
    assert list((tmp_path / "ds").iterdir()) == []


def test_racing_publishers_get_distinct_versions(tmp_path):
    errors = []

    def go(i):
        try:
            catalog.publish(tmp_path, "ds", write_npz(np.full((2, 1, 2, 2), i, np.uint8)), {"seed": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert catalog.versions_of(tmp_path / "ds") == list(range(1, 9))
    seeds = sorted(catalog.manifest(tmp_path / "ds" / str(v))["seed"] for v in range(1, 9))
    assert seeds == list(range(8))
    for v in range(1, 9):
        catalog.verify(tmp_path / "ds" / str(v))


def test_pull_verifies_and_detects_tampering(tmp_path):
    root, dest = tmp_path / "cat", tmp_path / "out"
    catalog.publish(root, "ds", write_npz(np.zeros((3, 1, 2, 2), np.uint8)), {})
    folder = catalog.pull(root, "ds", dest)
    assert folder == dest / "ds" / "1" and (folder / "manifest.json").exists()
    (folder / "data.npz").write_bytes(b"tampered")
    with pytest.raises(CatalogError, match="data.npz: sha256 mismatch"):
        catalog.pull(root, "ds@1", dest)


def test_pull_refuses_a_corrupted_source(tmp_path):
    root = tmp_path / "cat"
    v = catalog.publish(root, "ds", write_npz(np.zeros((3, 1, 2, 2), np.uint8)), {})
    m = json.loads((v / "manifest.json").read_text())
    m["files"]["data.npz"] = "0" * 64
    (v / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CatalogError, match="sha256 mismatch"):
        catalog.pull(root, "ds", tmp_path / "out")
    assert not (tmp_path / "out" / "ds" / "1").exists()


@pytest.mark.parametrize("ref,message", [("nope", "no published dataset"), ("ds@7", "no version 7"),
                                         ("ds@x", "must be a number")])
def test_resolve_errors(tmp_path, ref, message):
    catalog.publish(tmp_path, "ds", write_npz(np.zeros((1, 1, 2, 2), np.uint8)), {})
    with pytest.raises(CatalogError, match=message):
        catalog.pull(tmp_path, ref, tmp_path / "out")


def test_uncommitted_versions_are_invisible(tmp_path):
    (tmp_path / "ds" / ".tmp-abc").mkdir(parents=True)
    (tmp_path / "ds" / "5").mkdir()  # no manifest: not a version
    assert catalog.names(tmp_path) == [] and catalog.versions_of(tmp_path / "ds") == []
