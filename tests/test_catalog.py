"""The catalog: atomic immutable versions on a folder and on an fsspec store, racing publishers
(threads and processes), every format round-tripped, virtual datasets, safe pulls, the pages."""

import json
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

import catalog
from catalog import formats
from catalog.store import CatalogError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (23, 1, 5, 4), dtype=np.uint8)
RGB = RNG.integers(0, 256, (7, 3, 4, 4), dtype=np.uint8)
LABELS = (np.arange(23) % 3).astype(np.int64)


def writer(images, labels=None, fmt="npz"):
    return lambda folder: formats.write(fmt, folder, images, labels)


def fresh_memory_root() -> str:
    return f"memory://cat-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path):
    return str(tmp_path / "cat") if request.param == "local" else fresh_memory_root()


def test_publish_versions_and_manifest(root):
    a = catalog.publish(root, "ds", writer(np.zeros((3, 1, 2, 2), np.uint8)), {"seed": 1, "format": "npz"})
    b = catalog.publish(root, "ds", writer(np.ones((3, 1, 2, 2), np.uint8)), {"seed": 2, "format": "npz"})
    assert a.endswith("/ds/1") and b.endswith("/ds/2")
    m = catalog.manifest(b)
    assert m["name"] == "ds" and m["version"] == 2 and m["seed"] == 2 and set(m["files"]) == {"data.npz"}
    assert catalog.names(root) == ["ds"] and catalog.versions_of(root, "ds") == [1, 2]
    images, labels = catalog.load("ds", 1, root)
    assert images.sum() == 0 and labels is None
    assert catalog.load("ds@2", root=root)[0].min() == 1


@pytest.mark.parametrize("stored", formats.FORMATS)
@pytest.mark.parametrize("wanted", formats.FORMATS)
def test_every_format_round_trips_byte_identical(root, tmp_path, stored, wanted):
    for name, images, labels in (("gray", IMAGES, LABELS), ("rgb", RGB, None)):
        catalog.publish(root, name, writer(images, labels, stored), {"format": stored})
        out = catalog.pull(root, name, tmp_path / f"{name}-{stored}-{wanted}", fmt=wanted)
        m = json.loads((out / "manifest.json").read_text())
        assert m["format"] == wanted and catalog.verify(out)
        got_images, got_labels = formats.read(wanted, out)
        np.testing.assert_array_equal(got_images, images)
        assert got_images.dtype == np.uint8
        if labels is None:
            assert got_labels is None
        else:
            np.testing.assert_array_equal(got_labels, labels)
            assert got_labels.dtype == np.int64
        loaded = catalog.load(name, root=root)
        np.testing.assert_array_equal(loaded[0], images)


def test_the_same_arrays_give_the_same_bytes(tmp_path):
    import time

    for fmt in formats.FORMATS:
        (tmp_path / f"{fmt}-a").mkdir()
        formats.write(fmt, tmp_path / f"{fmt}-a", IMAGES, LABELS)
    time.sleep(2.1)  # zip timestamps have a 2-second resolution
    for fmt in formats.FORMATS:
        (tmp_path / f"{fmt}-b").mkdir()
        formats.write(fmt, tmp_path / f"{fmt}-b", IMAGES, LABELS)
        a = {p.relative_to(tmp_path / f"{fmt}-a"): p.read_bytes() for p in (tmp_path / f"{fmt}-a").rglob("*") if p.is_file()}
        b = {p.relative_to(tmp_path / f"{fmt}-b"): p.read_bytes() for p in (tmp_path / f"{fmt}-b").rglob("*") if p.is_file()}
        assert a == b, fmt


def test_png_layout_and_parquet_columns(tmp_path):
    (tmp_path / "p").mkdir()
    formats.write("png", tmp_path / "p", IMAGES, LABELS)
    assert (tmp_path / "p" / "images" / "2" / "000002.png").is_file()
    assert (tmp_path / "p" / "labels.csv").read_text().splitlines()[:2] == ["file,label", "images/0/000000.png,0"]
    (tmp_path / "q").mkdir()
    formats.write("parquet", tmp_path / "q", IMAGES, LABELS)
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "q" / "data.parquet")
    assert list(frame.columns) == ["index", "label", "png"] and frame["png"][0][:4] == b"\x89PNG"


def test_failed_write_leaves_nothing(root):
    def broken(folder):
        (folder / "half.npz").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        catalog.publish(root, "ds", broken, {})
    assert catalog.versions_of(root, "ds") == [] and catalog.names(root) == []


def test_racing_publishers_get_distinct_versions(root):
    errors = []

    def go(i):
        try:
            catalog.publish(root, "ds", writer(np.full((2, 1, 2, 2), i, np.uint8)), {"seed": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert catalog.versions_of(root, "ds") == list(range(1, 9))
    seeds = sorted(catalog.verify(catalog.resolve(root, "ds", v))["seed"] for v in range(1, 9))
    assert seeds == list(range(8))


PUBLISHER = """
import sys, numpy as np, catalog
from catalog import formats
i = int(sys.argv[2])
images = np.full((50, 1, 4, 4), i, np.uint8)
catalog.publish(sys.argv[1], "race", lambda d: formats.write("png", d, images, np.zeros(50, np.int64)), {"seed": i, "format": "png"})
"""


def test_four_publisher_processes_on_one_name(tmp_path):
    root = tmp_path / "cat"
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(root), str(i)]) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert catalog.versions_of(root, "race") == [1, 2, 3, 4]
    seen = set()
    for v in range(1, 5):
        m = catalog.verify(catalog.resolve(root, "race", v))
        images, _ = catalog.load("race", v, root)
        assert len(m["files"]) == 51 and (images == m["seed"]).all()  # complete, not mixed
        seen.add(m["seed"])
    assert seen == {0, 1, 2, 3}


def test_uncommitted_versions_are_invisible(tmp_path):
    (tmp_path / "ds" / ".tmp-abc").mkdir(parents=True)
    (tmp_path / "ds" / "5").mkdir()  # no manifest: not a version (a publisher died mid-way)
    (tmp_path / "ds" / "5" / "data.npz").write_bytes(b"half")
    assert catalog.names(tmp_path) == [] and catalog.versions_of(tmp_path, "ds") == []
    memory = fresh_memory_root()
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{memory.removeprefix('memory://')}/ds/1/data.npz", b"half")
    assert catalog.versions_of(memory, "ds") == []


def test_pull_verifies_and_detects_tampering(root, tmp_path):
    catalog.publish(root, "ds", writer(IMAGES, LABELS), {"format": "npz"})
    out = catalog.pull(root, "ds", tmp_path / "out")
    assert out == tmp_path / "out" and (out / "manifest.json").exists() and (out / "preview.png").exists() is False
    assert catalog.pull(root, "ds", tmp_path / "out") == out  # the same pull again: nothing to do
    (out / "data.npz").write_bytes(b"tampered")
    with pytest.raises(CatalogError, match="out/data.npz: sha256 mismatch"):
        catalog.pull(root, "ds@1", tmp_path / "out")


def test_pull_refuses_a_corrupted_source(tmp_path):
    root = tmp_path / "cat"
    v = catalog.publish(root, "ds", writer(IMAGES), {"format": "npz"})
    m = json.loads((tmp_path / "cat" / "ds" / "1" / "manifest.json").read_text())
    m["files"]["data.npz"] = "0" * 64
    (tmp_path / "cat" / "ds" / "1" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CatalogError, match=r"ds/1/data.npz: sha256 mismatch"):
        catalog.pull(root, "ds", tmp_path / "out")
    assert not (tmp_path / "out").exists() and v.endswith("/1")


def test_pull_into_a_folder_with_other_content_needs_force(tmp_path):
    root = tmp_path / "cat"
    catalog.publish(root, "ds", writer(IMAGES, LABELS), {"format": "npz"})
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(CatalogError, match="not empty"):
        catalog.pull(root, "ds", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    catalog.pull(root, "ds", dest, force=True)
    assert (dest / "notes.txt").read_text() == "keep me" and (dest / "data.npz").is_file()
    assert not list(dest.glob(".ganvirt-pull-*"))


def test_a_manifest_cannot_point_outside_the_version(tmp_path):
    root = tmp_path / "cat"
    catalog.publish(root, "ds", writer(IMAGES), {"format": "npz"})
    path = tmp_path / "cat" / "ds" / "1" / "manifest.json"
    m = json.loads(path.read_text())
    m["files"]["../../escape.txt"] = "0" * 64
    path.write_text(json.dumps(m))
    with pytest.raises(CatalogError, match="not a plain relative path"):
        catalog.pull(root, "ds", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("ref,message", [
    ("nope", "no published dataset"), ("ds@7", "no version 7"), ("ds@x", "positive number"),
    ("../ds", "dataset name"), ("a/b", "dataset name"), ("/abs", "dataset name"), ("ds\n", "dataset name"),
    ("ds@-1", "positive number"), ("DS", "dataset name")])
def test_names_and_versions_are_validated(tmp_path, ref, message):
    catalog.publish(tmp_path, "ds", writer(np.zeros((1, 1, 2, 2), np.uint8)), {})
    with pytest.raises(CatalogError, match=message):
        catalog.pull(tmp_path, ref, tmp_path / "out")
    with pytest.raises(CatalogError, match="dataset name"):
        catalog.publish(tmp_path, "../evil", writer(IMAGES), {})


def test_virtual_dataset_is_materialised_and_checked(root, tmp_path):
    digest = formats.content_sha256(IMAGES, LABELS)
    v = catalog.publish(root, "virt", lambda d: None,
                        {"virtual": True, "format": "parquet", "shape": list(IMAGES.shape), "seed": 0,
                         "content_sha256": digest, "generator": {"model": "m", "version": "1"}})
    assert catalog.manifest(v)["files"] == {}  # a few hundred bytes until someone pulls it
    with pytest.raises(CatalogError, match="is virtual"):
        catalog.pull(root, "virt", tmp_path / "a")
    out = catalog.pull(root, "virt", tmp_path / "a", sampler=lambda m: (IMAGES, LABELS))
    m = catalog.verify(out)
    assert m["materialised"] and m["format"] == "parquet"
    np.testing.assert_array_equal(formats.read("parquet", out)[0], IMAGES)
    with pytest.raises(CatalogError, match="materialised images have sha256"):
        catalog.pull(root, "virt", tmp_path / "b", sampler=lambda m: (IMAGES[::-1].copy(), LABELS))
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_catalog_pages(tmp_path):
    root = tmp_path / "cat"
    catalog.publish(root, "ds", writer(IMAGES, LABELS), {
        "format": "npz", "shape": list(IMAGES.shape), "metrics": {"fid_like": 2.5, "tstr_accuracy": 0.97},
        "thresholds": {"fid_like": {"value": 2.5, "max": 4.0, "passed": True},
                       "tstr_accuracy": {"value": 0.97, "min": 0.99, "passed": False}},
        "generator": {"uri": "models:/ds-generator/1", "run_id": "abc"}, "prefect_flow_run_id": "f-123"})
    top = (root / "index.html").read_text()
    page = (root / "ds" / "index.html").read_text()
    assert "ds/index.html" in top and "ganvirt pull ds@1 --to ./ds-v1" in top
    assert "models:/ds-generator/1" in page and "f-123" in page and "class='fail'>0.97" in page
    assert "gates <b class='fail'>failed</b> (tstr_accuracy)" in page


def test_loaders_for_consumers(tmp_path):
    root = tmp_path / "cat"
    catalog.publish(root, "ds", writer(IMAGES, LABELS, "png"), {"format": "png"})
    frame = catalog.to_pandas("ds", root=root)
    assert len(frame) == 23 and list(frame.columns) == ["label", "image"] and frame["label"].iloc[4] == 1
    np.testing.assert_array_equal(frame["image"].iloc[3], IMAGES[3])
    from catalog.torch import SyntheticDataset

    ds = SyntheticDataset("ds", root=root)
    x, y = ds[5]
    assert len(ds) == 23 and tuple(x.shape) == (1, 5, 4) and y == 2 and float(x.max()) <= 1.0
