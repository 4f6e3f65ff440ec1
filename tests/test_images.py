"""Image folders read like a dataset tool: any size and mode, EXIF orientation, flat or
labelled folders, undecodable files within a limit, streamed into a memory-mapped snapshot."""

import numpy as np
import pytest
from PIL import Image

from snapshots import sources
from snapshots import store as snapshots
from snapshots.images import ImageOptions, parse_size
from snapshots.sources import SourceError

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def exif_rotated(path):
    """A 20x10 picture, red left half and blue right half, stored with EXIF orientation 6
    ("turn 90° clockwise to display"): it displays 10 wide, 20 tall, red on top."""
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10], a[:, 10:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, exif=exif)


def test_mixed_sizes_and_modes_with_exif(tmp_path):
    root = tmp_path / "mixed"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    exif_rotated(root / "a" / "0-rotated.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(root / "a" / "1-transparent.png")  # over white
    pal = Image.new("P", (12, 8))
    pal.putpalette([0, 255, 0] * 256)
    pal.save(root / "a" / "2-palette.gif")
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(root / "b" / "0-cmyk.jpg", quality=100)  # cyan
    Image.fromarray(np.full((9, 9), 65535, np.uint16)).save(root / "b" / "1-white16.png")
    Image.fromarray(np.full((9, 9), 32896, np.uint16)).save(root / "b" / "2-grey16.png")  # 128 * 257
    Image.new("L", (16, 16), 77).save(root / "b" / "3-grey.png")

    raw = sources.read(str(root), tmp_path, ImageOptions(size=(8, 8)))
    x = raw.images.transpose(0, 2, 3, 1).astype(int)  # (N, H, W, C)
    assert raw.images.shape == (7, 3, 8, 8) and raw.classes == ["a", "b"]
    assert raw.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(x[0, 1, 4], RED)   # displayed upright: red on top
    np.testing.assert_array_equal(x[0, 6, 4], BLUE)
    np.testing.assert_array_equal(x[1], np.broadcast_to(WHITE, (8, 8, 3)))
    np.testing.assert_array_equal(x[2], np.broadcast_to(GREEN, (8, 8, 3)))
    assert np.abs(x[3] - (0, 255, 255)).max() <= 3  # JPEG's rounding
    assert (x[4] == 255).all() and (x[5] == 128).all() and (x[6] == 77).all()


def test_default_size_is_the_commonest_and_grey_content_keeps_one_channel(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (12, 10), (40 * i,) * 3).save(root / f"{i}.png")  # grey content, RGB mode
    Image.new("RGB", (30, 30), (200,) * 3).save(root / "odd.png")
    raw = sources.read(str(root), tmp_path)
    assert raw.images.shape == (4, 1, 10, 12) and raw.labels is None and raw.classes is None
    assert raw.images[:3, 0, 5, 5].tolist() == [0, 40, 80] and (raw.images[3] == 200).all()
    assert any("commonest is 10x12" in n for n in raw.notes) and any("1 channel" in n for n in raw.notes)
    assert sources.read(str(root), tmp_path, ImageOptions(channels=3)).images.shape == (4, 3, 10, 12)
    colour = sources.read(str(root), tmp_path, ImageOptions(size=(4, 6), channels=1)).images
    assert colour.shape == (4, 1, 4, 6)


def test_labels_csv(tmp_path):
    root = tmp_path / "csv"
    root.mkdir()
    for i in range(4):
        Image.new("L", (6, 6), i).save(root / f"{i}.png")
    (root / "labels.csv").write_text("file,label\n3.png,10\n0.png,2\n1.png,10\n2.png,2\n")
    raw = sources.read(str(root), tmp_path)
    assert raw.classes == ["2", "10"] and raw.labels.tolist() == [1, 0, 1, 0]
    assert raw.images[:, 0, 0, 0].tolist() == [3, 0, 1, 2]


def test_undecodable_files_within_and_over_the_limit(tmp_path):
    root = tmp_path / "some-bad"
    root.mkdir()
    for i in range(9):
        Image.new("L", (6, 6), i).save(root / f"{i}.png")
    (root / "x-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "notes.txt").write_text("not an image: skipped with a note, not counted")
    with pytest.raises(SourceError, match=r"1 of 10 file\(s\) cannot be decoded .* x-broken.png"):
        sources.read(str(root), tmp_path)
    raw = sources.read(str(root), tmp_path, ImageOptions(max_undecodable=0.1))
    assert raw.images[:, 0, 0, 0].tolist() == list(range(9))
    assert any("x-broken.png" in n for n in raw.notes) and any("notes.txt" in n for n in raw.notes)


def test_parallel_decoding_streams_into_a_memory_mapped_snapshot(tmp_path):
    root = tmp_path / "many"
    for k in range(2):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(300):  # 600 images: decoded by worker processes
            Image.new("RGB", (10 + i % 3, 10), (i % 256, 50 * k, 7)).save(root / f"class{k}" / f"{i:03d}.png")
    (root / "class1" / "999.png").write_bytes(b"junk")
    raw = sources.read(str(root), tmp_path, ImageOptions(size=(8, 8), max_undecodable=0.01), scratch=tmp_path / "snaps")
    assert isinstance(raw.images, np.memmap) and raw.file.parent == tmp_path / "snaps"
    assert raw.images.shape == (600, 3, 8, 8) and raw.labels.tolist() == [0] * 300 + [1] * 300
    assert raw.images[:, 0, 4, 4].tolist() == [i % 256 for i in range(300)] * 2
    serial = sources.read(str(root), tmp_path, ImageOptions(size=(8, 8), max_undecodable=0.01))
    np.testing.assert_array_equal(serial.images, raw.images)  # the same bytes without the files
    snap, created = snapshots.create(raw, "many", tmp_path / "snaps", holdout=0.2)
    assert created and not raw.file.exists()  # moved into the snapshot, not copied
    assert snap.fingerprint == snapshots.fingerprint(serial.images, serial.labels)
    data = snap.load()
    assert isinstance(data["images"], np.memmap) and data["images"].shape == (600, 3, 8, 8)
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [snap.path.rsplit("/", 1)[-1]]


@pytest.mark.parametrize("text,expected", [("64", (64, 64)), ("48x64", (48, 64)), (" 32 x 16 ", (32, 16))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0", "64x", "x64", "8x0", "5000", "big"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="expected N or HxW"):
        parse_size(text)
