"""Every bad input through the real ``ganvirt run`` (flow, Prefect, MLflow): a one-line error
naming the file, field or value and what was expected, exit status 1, no traceback on the
terminal, and nothing written to the snapshot cache, the registry or the catalog."""

import gzip
import os
import socket

import numpy as np
import pytest
from PIL import Image

import catalog
from ganvirt import settings
from ganvirt.cli import main
from tasks.tracking import client
from tests.idx import idx_bytes, write_pair


def idx_folder(tmp, images: bytes | None = None, labels: bytes | None = None, n=30):
    x, y = write_pair(tmp, "t", n)
    if images is not None:
        (tmp / "t-images-idx3-ubyte.gz").write_bytes(images)
    if labels is not None:
        (tmp / "t-labels-idx1-ubyte.gz").write_bytes(labels)
    return x, y


def image_folder(tmp, sizes=((8, 8), (8, 8)), modes=("L", "L"), extra=None):
    for c, (size, mode) in enumerate(zip(sizes, modes)):
        (tmp / f"c{c}").mkdir(parents=True)
        for i in range(6):
            Image.new(mode, size, color=i * 10 if mode == "L" else (i, i, i)).save(tmp / f"c{c}" / f"{i}.png")
    if extra:
        name, data = extra
        (tmp / "c0" / name).write_bytes(data)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: connections are refused


def build(kind, tmp):  # noqa: C901 - one branch per row of the table
    """(source argument, extra CLI args) for each bad input."""
    x8 = np.random.default_rng(0).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    if kind == "missing path":
        return str(tmp / "nope"), []
    if kind == "empty folder":
        (tmp / "empty").mkdir()
        return str(tmp / "empty"), []
    if kind == "unknown scheme":
        return "ftp://example.org/mnist", []
    if kind == "corrupt gzip":
        idx_folder(tmp, images=b"\x1f\x8b" + b"not really gzip" * 10)
        return str(tmp), []
    if kind == "truncated idx":
        idx_folder(tmp, images=gzip.compress(idx_bytes(np.zeros((30, 8, 8), np.uint8))[:200]))
        return str(tmp), []
    if kind == "wrong idx magic":
        idx_folder(tmp, images=gzip.compress(b"\x01\x02\x08\x03" + idx_bytes(np.zeros((30, 8, 8), np.uint8))[4:]))
        return str(tmp), []
    if kind == "count mismatch":
        idx_folder(tmp, labels=gzip.compress(idx_bytes(np.zeros(29, np.uint8))))
        return str(tmp), []
    if kind == "images beside class folders":
        image_folder(tmp)
        Image.new("L", (8, 8)).save(tmp / "loose.png")
        return str(tmp), []
    if kind == "labels.csv without its file":
        image_folder(tmp)
        (tmp / "labels.csv").write_text("file,label\nc0/0.png,a\nc0/gone.png,b\n")
        return str(tmp), []
    if kind == "bad image size":
        image_folder(tmp)
        return str(tmp), ["--image-size", "0x8"]
    if kind == "bad channels":
        image_folder(tmp)
        return str(tmp), ["--channels", "2"]
    if kind == "unreadable image":
        image_folder(tmp, extra=("broken.png", b"\x89PNG\r\n\x1a\nbroken"))
        return str(tmp), []
    if kind == "nan in npz":
        np.savez(tmp / "x.npz", images=np.full((40, 1, 8, 8), np.nan), labels=np.arange(40) % 2)
        return str(tmp / "x.npz"), []
    if kind == "out of range npz":
        np.savez(tmp / "x.npz", images=np.full((40, 1, 8, 8), 3.0), labels=np.arange(40) % 2)
        return str(tmp / "x.npz"), []
    if kind == "negative labels":
        np.savez(tmp / "x.npz", images=x8, labels=np.arange(40) % 2 - 1)
        return str(tmp / "x.npz"), []
    if kind == "float labels":
        np.savez(tmp / "x.npz", images=x8, labels=(np.arange(40) % 2) + 0.5)
        return str(tmp / "x.npz"), []
    if kind == "single class conditional":
        np.savez(tmp / "x.npz", images=x8, labels=np.zeros(40, np.int64))
        return str(tmp / "x.npz"), ["--conditional"]
    if kind == "too few images":
        np.savez(tmp / "x.npz", images=x8[:3], labels=np.arange(3) % 2)
        return str(tmp / "x.npz"), []
    if kind == "http refused":
        return f"http://127.0.0.1:{refused_port()}/t-images-idx3-ubyte.gz", []
    if kind == "http 404":
        return "HTTP404", []
    if kind == "name with path characters":
        return "digits", ["--name", "../../etc"]
    if kind == "zero steps":
        return "digits", ["--steps", "0"]
    if kind == "negative steps":
        return "digits", ["--steps", "-5"]
    if kind == "negative holdout":
        return "digits", ["--holdout", "-0.2"]
    raise AssertionError(kind)


TABLE = [  # (input, what the one-line error must contain)
    ("missing path", "no such file or folder"),
    ("empty folder", "empty"),
    ("unknown scheme", "ftp://example.org/mnist"),
    ("corrupt gzip", "t-images-idx3-ubyte.gz"),
    ("truncated idx", "t-images-idx3-ubyte.gz"),
    ("wrong idx magic", "t-images-idx3-ubyte.gz"),
    ("count mismatch", "29"),
    ("images beside class folders", "loose.png"),
    ("labels.csv without its file", "c0/gone.png"),
    ("bad image size", "--image-size '0x8' (image_size): Value error, image size '0x8': expected N or HxW"),
    ("bad channels", "--channels 2 (channels): Input should be 1 or 3"),
    ("unreadable image", "broken.png"),
    ("nan in npz", "x.npz"),
    ("out of range npz", "x.npz"),
    ("negative labels", "label"),
    ("float labels", "label"),
    ("single class conditional", "class"),
    ("too few images", "3 images"),
    ("http refused", "cannot fetch"),
    ("http 404", "HTTP 404"),
    ("name with path characters", "dataset name '../../etc'"),
    ("zero steps", "--steps 0 (train.steps): Input should be greater than or equal to 1"),
    ("negative steps", "--steps -5 (train.steps)"),
    ("negative holdout", "holdout"),
]


def registry_state() -> tuple:
    models = sorted((m.name, tuple(sorted(v.version for v in m.latest_versions)))
                    for m in client().search_registered_models())
    return models


@pytest.mark.parametrize("kind,message", TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_gives_one_clear_line_and_writes_nothing(kind, message, tmp_path, capfd, prefect_server,
                                                           http_folder):
    source, extra = build(kind, tmp_path)
    if source == "HTTP404":
        source = f"{http_folder[1]}/missing-images-idx3-ubyte.gz"
    snaps = sorted(os.listdir(settings.snapshot_root())) if os.path.isdir(settings.snapshot_root()) else []
    models, datasets = registry_state(), catalog.names(settings.catalog_root())
    code = main(["run", "--source", source, "--name", "bad-input", "--steps", "2", *extra]
                if "--name" not in extra and "--steps" not in extra else ["run", "--source", source, *extra])
    out, err = capfd.readouterr()
    lines = [line for line in err.strip().splitlines() if line.startswith("ganvirt: error:")]
    assert code == 1, err[-2000:]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in out + err
    assert (sorted(os.listdir(settings.snapshot_root())) if os.path.isdir(settings.snapshot_root()) else []) == snaps
    assert registry_state() == models and catalog.names(settings.catalog_root()) == datasets


def test_debug_shows_the_traceback(tmp_path, capfd, prefect_server):
    assert main(["--debug", "run", "--source", str(tmp_path / "nope"), "--name", "bad-input"]) == 1
    err = capfd.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("ganvirt: error:")
