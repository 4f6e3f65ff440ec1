"""The owner's explanation panels, checked for what they show: the nearest-neighbour panel's
images are the true nearest train rows, the interpolations end at the seeds' samples, the
per-class chart carries the report's values."""

import json
import re
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from gan import checkpoint
from gan.evaluate import EvalConfig, real_split
from gan.features import ClassifierConfig, extract
from gan.sampling import sample_seeds
from gan.train import TrainConfig
from tasks.evaluate import evaluate
from tasks.explain import PAIRS, STEPS, training_figure
from tasks.features import extractor_for
from tasks.ingest import ingest
from tasks.train import train_gan
from tests.conftest import open_gates

EVAL = EvalConfig(ClassifierConfig(steps=40), num_samples=400)


@pytest.fixture(scope="module")
def panels(tmp_path_factory):
    snap = ingest.fn("digits")
    ckpt = train_gan.fn(snap, "explain", TrainConfig(steps=300, batch_size=32, probe_every=100, grid_every=0))
    report = evaluate.fn(ckpt, snap, EVAL, open_gates())
    out = Path(mlflow.artifacts.download_artifacts(run_id=ckpt.run_id, artifact_path="report",
                                                   dst_path=str(tmp_path_factory.mktemp("report"))))
    return snap, ckpt, report, out, json.loads((out / "panels.json").read_text())


def tiles(path: Path, scale: int, h: int, w: int, cols: int) -> np.ndarray:
    """The tiles of a ``gan.sampling.grid`` picture saved ``scale`` times larger: (rows, cols, H, W)."""
    a = np.asarray(Image.open(path))[::scale, ::scale]
    rows = (a.shape[0] - 1) // (h + 1)
    return np.stack([np.stack([a[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w]
                               for c in range(cols)]) for r in range(rows)])


def test_neighbour_panel_shows_the_true_nearest_train_images(panels):
    snap, ckpt, _, out, data = panels
    xt, _, _, _ = real_split(snap.load())
    nb, scale = data["neighbours"], data["interpolations"]["scale"]
    t = tiles(out / "neighbours.png", scale, 8, 8, 7)
    assert len(t) == len(nb["sample_index"]) == 12
    flat = xt.reshape(len(xt), -1).astype(np.float64) / 255
    features = extract(extractor_for(snap, EVAL)[0], xt)
    shown = t[:, 0][:, None].astype(np.uint8)  # the samples, as the panel shows them
    for r, sample in enumerate(shown):
        pixel_order = np.argsort(((flat - sample.reshape(-1) / 255) ** 2).sum(1), kind="stable")[:3]
        assert pixel_order.tolist() == nb["pixel_index"][r]
        np.testing.assert_array_equal(t[r, 1:4], xt[pixel_order, 0])  # real images, on the owner's side
        feature_order = np.argsort(((features - extract(extractor_for(snap, EVAL)[0], sample[None])) ** 2).sum(1),
                                   kind="stable")[:3]
        assert feature_order.tolist() == nb["feature_index"][r]
        np.testing.assert_array_equal(t[r, 4:7], xt[feature_order, 0])
    first = np.asarray([d[0] for d in nb["pixel_distance"]])
    assert (np.diff(first[:6]) >= 0).all()  # the worst cases first, nearest to a train record first of all
    assert 0 < nb["near_copy"] < nb["typical"]


def test_interpolations_end_at_the_seeds_samples(panels):
    _, ckpt, _, out, data = panels
    G = checkpoint.load_generator(ckpt.path)
    t = tiles(out / "interpolations.png", data["interpolations"]["scale"], 8, 8, STEPS)
    for r, (a, b) in enumerate(PAIRS):
        label = np.array([r % 10])
        np.testing.assert_array_equal(t[r, 0], sample_seeds(G, np.array([a]), label)[0, 0])
        np.testing.assert_array_equal(t[r, -1], sample_seeds(G, np.array([b]), label)[0, 0])
        assert not np.array_equal(t[r, 0], t[r, STEPS // 2])  # the path moves
    sweep = tiles(out / "label_sweep.png", data["interpolations"]["scale"], 8, 8, 10)
    for k in range(10):
        np.testing.assert_array_equal(sweep[0, k], sample_seeds(G, np.array([PAIRS[0][0]]), np.array([k]))[0, 0])


def test_per_class_chart_carries_the_reports_values(panels):
    _, _, report, out, _ = panels
    page = (out / "index.html").read_text()
    bars = re.findall(r"data-metric='(\w+)' data-class='(\d+)' data-value='([^']+)'", page)
    assert len(bars) == 20
    for metric, cls, value in bars:
        assert float(value) == report.metrics[f"{metric}.class_{cls}"]
    assert "training.png" not in page and page.count("data:image/png;base64,") >= 6  # self-contained
    for key in ("fid_like", "tstr_accuracy", "mia_auc"):
        assert f"<td>{key}</td>" in page


def test_training_figure_of_a_run_with_nothing_logged_draws_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned "No artists with labels found to put in legend"
        training_figure({}, None, tmp_path / "empty.png")
        training_figure({"loss_d": [(1, 0.7), (2, 0.6)]}, 2, tmp_path / "losses.png")
    assert Image.open(tmp_path / "empty.png").size == Image.open(tmp_path / "losses.png").size
