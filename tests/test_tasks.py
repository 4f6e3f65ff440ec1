"""Each task on its own (``task.fn``), chained on tiny configs against the session's MLflow store."""

import json
import os
import warnings

import mlflow
import numpy as np
import pytest

import catalog
from gan import checkpoint
from gan.evaluate import EvalConfig
from gan.features import ClassifierConfig
from gan.sampling import sample
from gan.train import TrainConfig
from ganvirt import settings
from tasks.evaluate import evaluate
from tasks.gates import GateFailed
from tasks.ingest import ingest
from tasks.publish import commit, plan, sample_shard
from tasks.register import register
from tasks.tracking import client
from tasks.train import train_gan
from tests.conftest import grid_steps, open_gates

TINY_TRAIN = TrainConfig(steps=60, batch_size=32, log_every=20, grid_every=30)
TINY_EVAL = EvalConfig(ClassifierConfig(steps=40), num_samples=400)
LENIENT = open_gates()


@pytest.fixture(scope="module")
def chain():
    snap = ingest.fn("digits")
    ckpt = train_gan.fn(snap, "unit", TINY_TRAIN)
    report = evaluate.fn(ckpt, snap, TINY_EVAL, LENIENT)
    return snap, ckpt, report


def test_ingest_is_cached(chain):
    snap, _, _ = chain
    assert ingest.fn("digits") == snap
    assert snap.num_classes == 10 and snap.num_train + snap.num_holdout == 1797


def test_train_logs_to_mlflow(chain):
    _, ckpt, _ = chain
    run = client().get_run(ckpt.run_id)
    assert run.data.params["train.steps"] == "60" and run.data.params["model.num_classes"] == "10"
    history = client().get_metric_history(ckpt.run_id, "loss_d")
    assert [m.step for m in history] == [20, 40, 60]
    assert grid_steps(ckpt.run_id) == [30, 60]  # one image key, a step each: the UI's step slider


def test_train_logs_its_dataset_without_a_warning(chain):
    """MLflow 3 warns that a local path "can be interpreted in multiple ways" (its local source
    is registered twice); the training task's console stays free of it."""
    snap = chain[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_gan.fn(snap, "unit-quiet", TrainConfig(steps=2, batch_size=32, log_every=1, grid_every=0))
    assert not [str(w.message) for w in caught if "dataset source" in str(w.message)]


def test_train_under_torchrun_from_the_task(chain):
    """nproc=2: the task launches two gloo DDP processes through torchrun, replays rank 0's
    reports and grids into its MLflow run, and the checkpoint it returns loads and samples."""
    snap, _, _ = chain
    cfg = TrainConfig(steps=40, batch_size=32, log_every=20, grid_every=40, probe_every=20)
    ckpt = train_gan.fn(snap, "unit-ddp", cfg, "dcgan", width=8, nproc=2,
                        evaluation=EvalConfig(ClassifierConfig(steps=40), num_samples=400))
    run = client().get_run(ckpt.run_id)
    assert run.data.params["nproc"] == "2"
    assert [m.step for m in client().get_metric_history(ckpt.run_id, "loss_d")] == [20, 40]
    assert [m.step for m in client().get_metric_history(ckpt.run_id, "probe_score")] == [20, 40]
    assert "best_probe_score" in run.data.metrics
    assert grid_steps(ckpt.run_id) == [40]
    G = checkpoint.load_generator(ckpt.path)
    assert sample(G, 4, seed=0, labels=np.arange(4)).shape == (4, 1, 8, 8)


def test_evaluate_reports_all_metrics(chain):
    _, ckpt, report = chain
    headline = {k for k in report.metrics if ".class_" not in k}
    assert headline == {"fid_like", "fid_like.std", "fid_like_floor", "fid_like_floor.std", "fid_like_ratio",
                        "fid_like_ratio.std", "fid_like.count", "kid", "kid.std", "precision", "recall", "density",
                        "coverage", "tstr_accuracy", "tstr_accuracy.std", "trtr_accuracy", "dcr_share", "near_copy_share",
                        "mia_auc"}
    assert report.metrics["fid_like.count"] == 359  # digits' holdout: fewer than 2,000 a side
    assert {f"coverage.class_{c}" for c in range(10)} <= set(report.metrics)
    assert report.metrics["fid_like"] > report.metrics["fid_like_floor"] > 0  # 60 steps: far from real
    assert 0 <= report.metrics["tstr_accuracy"] <= 1 and report.metrics["trtr_accuracy"] > 0.5
    logged = client().get_run(ckpt.run_id).data
    assert logged.metrics["fid_like"] == pytest.approx(report.metrics["fid_like"])
    assert logged.tags["ganvirt.extractor_hash"] == report.extractor_hash
    files = {f.path for f in client().list_artifacts(ckpt.run_id, "report")}
    assert files == {"report/report.json", "report/report.md", "report/samples_by_class.png",
                     "report/nearest_train_distances.png", "report/index.html", "report/panels.json",
                     "report/neighbours.png", "report/interpolations.png", "report/label_sweep.png",
                     "report/training.png"}


def test_extractor_is_pinned(chain):
    snap, ckpt, report = chain
    again = evaluate.fn(ckpt, snap, TINY_EVAL, LENIENT)
    assert again.extractor_hash == report.extractor_hash
    assert again.metrics == report.metrics  # same extractor, same seeds: the same scores
    versions = client().search_model_versions("name='unit-features'")
    assert len(versions) == 1 and versions[0].tags["extractor_hash"] == report.extractor_hash
    features = mlflow.pyfunc.load_model("models:/unit-features/1")
    assert features.metadata.saved_input_example_info is not None  # consumers see the input's form
    images = snap.load()["images"][:5]
    from gan.features import extract
    from tasks.evaluate import extractor_for
    np.testing.assert_allclose(features.predict(images), extract(extractor_for(snap, TINY_EVAL)[0], images))


def test_failed_gate_registers_candidate_only(chain):
    _, ckpt, report = chain
    with pytest.raises(GateFailed, match=r"fid_like=.* \(needs <= .*\); tstr_accuracy=.* \(needs >= 1\)"):
        register.fn(ckpt, report, "unit-strict", open_gates(max_fid_ratio=1.0, min_tstr_accuracy=1.0))
    c = client()
    assert c.get_model_version_by_alias("unit-strict-generator", "candidate").tags["gates"] == "failed"
    with pytest.raises(mlflow.exceptions.MlflowException):
        c.get_model_version_by_alias("unit-strict-generator", "champion")


def test_register_and_publish(chain, tmp_path):
    snap, ckpt, report = chain
    version = register.fn(ckpt, report, "unit", LENIENT)
    mv = client().get_model_version_by_alias("unit-generator", "champion")
    assert str(mv.version) == version.version and mv.tags["fid_like"] == f"{report.metrics['fid_like']:.6g}"
    assert "Gates: passed" in mv.description
    p = plan.fn("unit", n=50, seed=3, expected_version=version.version, shard_size=20)
    folder = commit.fn(p, [sample_shard.fn(p, i) for i in p.shards])  # 3 shards: 20 + 20 + 10
    assert not os.path.exists(p.staging)
    m = catalog.verify(folder)
    assert m["shape"] == [50, 1, 8, 8] and m["class_counts"] == [5] * 10 and m["seed"] == 3
    assert m["generator"] == {"model": "unit-generator", "version": version.version,
                              "run_id": ckpt.run_id, "uri": f"models:/unit-generator/{version.version}"}
    assert m["source"]["fingerprint"] == snap.fingerprint and m["thresholds"]["fid_like"]["passed"]
    assert set(m["files"]) == {"data.npz", "preview.png"}
    images, labels = catalog.load("unit", root=settings.catalog_root())
    # image i of the dataset is the pyfunc model's image for seed 3 + i and label i % 10
    model = mlflow.pyfunc.load_model("models:/unit-generator@champion")
    import pandas as pd
    out = model.predict(pd.DataFrame({"seed": [3, 10, 52], "label": [0, 7, 9]}))
    np.testing.assert_array_equal(out, images[[0, 7, 49]])
    json.dumps(m)  # the manifest is plain JSON
