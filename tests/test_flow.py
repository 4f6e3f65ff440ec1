"""The real ``virtualize`` flow end to end on a tiny config, then the consumer's side:
pull and verify, tamper detection, the champion through MLflow in a fresh process, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import catalog
from flows.params import EvalParams, MLPParams, PublishParams, VirtualizeParams
from flows.virtualize import virtualize
from ganvirt import settings
from ganvirt.cli import main
from tasks.tracking import client
from tests.conftest import grid_steps, open_gates

TINY = dict(train=MLPParams(steps=200, batch_size=64), evaluation=EvalParams(classifier_steps=50, num_samples=400),
            publication=PublishParams(n=120, seed=7))
LENIENT = open_gates()


@pytest.fixture(scope="module")
def published(prefect_server):
    result = virtualize(VirtualizeParams(name="e2e", gate=LENIENT, **TINY))
    return result


def test_flow_publishes_a_verified_dataset(published):
    assert published["model"] == "e2e-generator" and published["alias"] == "champion"
    assert {"fid_like", "fid_like_floor", "kid", "precision", "tstr_accuracy", "trtr_accuracy",
            "mia_auc"} <= set(published["metrics"])
    m = catalog.verify(published["dataset"])
    assert m["shape"] == [120, 1, 8, 8] and m["seed"] == 7 and m["prefect_flow_run_id"]
    assert m["generator"]["version"] == published["version"]


def test_the_two_uis_link_to_each_other(published):
    """The MLflow run names its Prefect flow run; the flow run's link artifacts name the MLflow
    run and the model version; the run's dataset input carries the snapshot fingerprint; the
    sample grids sit under one image key with their steps (the MLflow UI's step slider)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = catalog.verify(published["dataset"])["prefect_flow_run_id"]
    run = client().get_run(published["run_id"])
    assert run.data.tags["ganvirt.prefect_flow_run_id"] == flow_run_id
    assert run.data.params["snapshot"].startswith(run.inputs.dataset_inputs[0].dataset.digest)
    assert len(run.inputs.dataset_inputs[0].dataset.digest) == 36

    async def links():
        async with get_client() as c:
            found = await c.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return {a.key: a.data for a in found if a.key} | {"progress": [a.data for a in found if a.type == "progress"]}

    found = asyncio.run(links())
    assert f"/#/experiments/{run.info.experiment_id}/runs/{published['run_id']})" in found["e2e-mlflow-run"], found
    assert f"/#/models/e2e-generator/versions/{published['version']})" in found["e2e-model-version"], found
    assert found["progress"] == [100.0]
    assert grid_steps(published["run_id"]) == [200]  # one image key, a step each (grid_every 2,000: the last only)


def test_registered_model_pins_the_torch_that_trained_it(published):
    import mlflow
    import torch

    requirements = open(mlflow.pyfunc.get_model_dependencies(f"models:/e2e-generator/{published['version']}")).read()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements.split()


def test_pull_then_tamper(published, tmp_path, capsys):
    folder = tmp_path / "pulled"
    assert main(["pull", "e2e", "--to", str(folder)]) == 0
    assert "2 files verified" in capsys.readouterr().out
    images, labels = np.load(folder / "data.npz")["images"], np.load(folder / "data.npz")["labels"]
    assert images.shape == (120, 1, 8, 8) and np.bincount(labels).tolist() == [12] * 10
    with open(folder / "preview.png", "r+b") as f:  # flip one byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(["pull", "e2e@1", "--to", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "preview.png: sha256 mismatch" in err


def test_champion_loads_in_a_fresh_process(published):
    data = np.load(os.path.join(published["dataset"], "data.npz"))
    script = """
import json, sys, mlflow, numpy as np, pandas as pd
m = mlflow.pyfunc.load_model("models:/e2e-generator@champion")
seeds, labels = [7, 8, 9, 50], [0, 1, 2, 3]
together = m.predict(pd.DataFrame({"seed": seeds, "label": labels}))
rows = np.concatenate([m.predict(pd.DataFrame({"seed": [s], "label": [l]})) for s, l in zip(seeds, labels)])
print(json.dumps({"together": together.tolist(), "rows": rows.tolist()}))
"""
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri()}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, cwd=str(settings.home()))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    together, rows = np.array(got["together"], np.uint8), np.array(got["rows"], np.uint8)
    np.testing.assert_array_equal(together, rows)
    # the published images are the champion's images for seed 7 + i and label i % 10
    np.testing.assert_array_equal(together, data["images"][[0, 1, 2, 43]])


def test_failed_gate_fails_the_run_and_changes_nothing(published):
    before = catalog.versions_of(settings.catalog_root(), "e2e")
    state = virtualize(VirtualizeParams(name="e2e", gate=open_gates(max_fid_ratio=1.0, min_tstr_accuracy=1.0),
                                        **TINY), return_state=True)
    assert state.is_failed()
    assert "fid_like=" in state.message and "tstr_accuracy=" in state.message
    assert catalog.versions_of(settings.catalog_root(), "e2e") == before
    champion = client().get_model_version_by_alias("e2e-generator", "champion")
    candidate = client().get_model_version_by_alias("e2e-generator", "candidate")
    assert str(champion.version) == published["version"] and int(candidate.version) > int(champion.version)


def test_cli_datasets_and_sample(published, tmp_path, capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "e2e" in out and "fid_like" in out
    target = tmp_path / "s.npz"
    assert main(["sample", "e2e", "-n", "5", "--seed", "7", "--label", "3", "--out", str(target)]) == 0
    z = np.load(target)
    assert z["images"].shape == (5, 1, 8, 8) and z["labels"].tolist() == [3] * 5
    assert main(["sample", "e2e@nosuchalias", "-n", "1", "--out", str(target)]) == 1
    assert "ganvirt: error:" in capsys.readouterr().err


def test_cli_run_with_bad_source_fails_in_one_line(prefect_server, tmp_path, capsys):
    assert main(["run", "--source", str(tmp_path / "missing"), "--name", "bad", "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ganvirt: error: source") and "no such file or folder" in err[-1]
    assert "bad" not in catalog.names(settings.catalog_root())


def test_publish_without_training(published, capsys):
    before = catalog.versions_of(settings.catalog_root(), "e2e")
    assert main(["publish", "e2e", "-n", "30", "--seed", "5"]) == 0
    after = catalog.versions_of(settings.catalog_root(), "e2e")
    assert after == before + [before[-1] + 1]
    m = catalog.verify(catalog.resolve(settings.catalog_root(), "e2e", after[-1]))
    assert m["shape"][0] == 30 and m["seed"] == 5
    assert m["generator"]["version"] == published["version"]  # the champion, not retrained
    assert m["metrics"]["fid_like"] == pytest.approx(published["metrics"]["fid_like"])


def test_sharded_publication_on_a_dask_cluster_equals_the_thread_pool(published):
    """The shards of a republish fan out over two Dask worker processes; the dataset is the
    same bytes as the same publication sampled on the default thread pool."""
    from prefect_dask import DaskTaskRunner

    from flows.republish import RepublishParams, republish
    from tasks import publish as publishing

    params = RepublishParams(name="e2e", n=90, seed=11)
    old = publishing.SHARD_SIZE
    publishing.SHARD_SIZE = 25  # 4 shards
    try:
        threads = republish(params)
        # four shards loaded the generator on threads; MLflow's loader swaps a mock `dbutils`
        # module in and out of sys.modules, and two loads at once used to leave it there
        assert "dbutils" not in sys.modules
        dask = republish.with_options(task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                            "dashboard_address": None}))(params)
    finally:
        publishing.SHARD_SIZE = old
    a, b = catalog.verify(threads), catalog.verify(dask)
    assert a["shards"] == b["shards"] == 4 and a["version"] != b["version"]
    for x, y in zip(catalog.load("e2e", a["version"], settings.catalog_root()),
                    catalog.load("e2e", b["version"], settings.catalog_root())):
        np.testing.assert_array_equal(x, y)


def test_datasets_show_prints_lineage(published, capsys):
    assert main(["datasets", "show", "e2e@1"]) == 0
    out = capsys.readouterr().out
    assert "e2e@1" in out and f"models:/e2e-generator/{published['version']}" in out
    assert "snapshot sha256" in out and "tstr_accuracy" in out and "ganvirt pull e2e@1" in out
    m = catalog.manifest(catalog.resolve(settings.catalog_root(), "e2e", 1))
    assert m["prefect_flow_run_id"] in out
    assert main(["datasets", "show", "../e2e"]) == 1
    assert "dataset name" in capsys.readouterr().err


def test_virtual_dataset_pulled_on_two_homes_is_identical(published, tmp_path, capsys):
    """10,000 images published as a manifest only; materialised from the registry by two
    separate processes on two copies of GANVIRT_HOME: the same bytes, the recorded checksum."""
    import shutil

    assert main(["publish", "e2e", "-n", "10000", "--seed", "3", "--virtual"]) == 0
    where = capsys.readouterr().out.split()[-1]
    m = catalog.verify(where)
    assert m["virtual"] and set(m["files"]) == {"preview.png"} and m["shape"][0] == 10_000
    assert m["noise"] == "splitmix64-quantile16"  # the scheme that reproduces it, named
    assert os.path.getsize(os.path.join(where, "manifest.json")) < 10_000  # kilobytes, not megabytes
    home = settings.home()
    copy = tmp_path / "home-copy"
    copy.mkdir()
    for part in ("mlflow.db", "mlartifacts", "catalog"):
        (shutil.copytree if (home / part).is_dir() else shutil.copy2)(home / part, copy / part)
    pulled = []
    for i, h in enumerate((home, copy)):
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
        env["GANVIRT_HOME"] = str(h)
        out = subprocess.run([sys.executable, "-m", "ganvirt.cli", "pull", f"e2e@{m['version']}", "--to",
                              str(tmp_path / f"pull{i}")], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "materialised from the registry, checksum verified" in out.stdout
        pulled.append((tmp_path / f"pull{i}" / "data.npz").read_bytes())
    assert pulled[0] == pulled[1]
    images, labels = catalog.formats.read("npz", tmp_path / "pull0")
    assert catalog.content_sha256(images, labels) == m["content_sha256"] and images.shape[0] == 10_000


def test_publish_and_pull_other_formats(published, tmp_path, capsys):
    assert main(["publish", "e2e", "-n", "40", "--seed", "9", "--format", "png"]) == 0
    where = capsys.readouterr().out.split()[-1]
    assert catalog.manifest(where)["format"] == "png"
    v = catalog.manifest(where)["version"]
    assert main(["pull", f"e2e@{v}", "--to", str(tmp_path / "pq"), "--format", "parquet"]) == 0
    a = catalog.formats.read("png", where)
    b = catalog.formats.read("parquet", tmp_path / "pq")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_catalog_on_an_fsspec_url(published, monkeypatch, capsys):
    """GANVIRT_CATALOG_URL moves publication to any fsspec store (memory:// here; s3:// alike)."""
    monkeypatch.setenv("GANVIRT_CATALOG_URL", "memory://ganvirt-test-catalog")
    assert main(["publish", "e2e", "-n", "20", "--seed", "4", "--format", "parquet"]) == 0
    where = capsys.readouterr().out.split()[-1]
    assert where.startswith("memory://ganvirt-test-catalog/e2e/")
    m = catalog.verify(where)
    assert m["format"] == "parquet" and m["generator"]["version"] == published["version"]
    images, labels = catalog.load("e2e", root="memory://ganvirt-test-catalog")
    assert images.shape == (20, 1, 8, 8) and labels.tolist() == [i % 10 for i in range(20)]
    assert main(["datasets"]) == 0 and "memory://ganvirt-test-catalog/index.html" in capsys.readouterr().out


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(published):
    """`mlflow models serve` of the champion: POST /invocations with seeds and labels returns
    the same images as the pyfunc model in this process."""
    import socket
    import time
    import urllib.request

    import mlflow
    import pandas as pd

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # mlflow starts `uvicorn` by name: the virtual environment's bin must be on PATH (as after activate)
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri(),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/e2e-generator@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    body = json.dumps({"dataframe_split": {"columns": ["seed", "label"], "data": [[0, 3], [1, 5], [2, 9]]}}).encode()
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    answer = json.loads(resp.read())
            except OSError:
                time.sleep(1)
        assert answer is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 120 s"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    served = np.asarray(answer["predictions"], dtype=np.uint8)
    local = mlflow.pyfunc.load_model("models:/e2e-generator@champion").predict(
        pd.DataFrame({"seed": [0, 1, 2], "label": [3, 5, 9]}))
    np.testing.assert_array_equal(served, local)


@pytest.mark.slow
def test_catalog_page_renders_in_chromium(published):
    """The static catalog page, opened from the folder in headless Chromium: the dataset, its
    metrics and its preview image (loaded: the page marks each image that loads)."""
    from tests.browser import render

    root = settings.catalog_root()
    top = render(f"file://{root}/index.html", budget_ms=3000)
    assert "e2e/index.html" in top and "ganvirt pull e2e@" in top
    page = render(f"file://{root}/e2e/index.html", budget_ms=3000)
    m = catalog.manifest(catalog.resolve(root, "e2e", 1))
    assert "e2e@1" in page and f"{m['metrics']['tstr_accuracy']:.4g}" in page
    assert 'src="1/preview.png"' in page and 'data-loaded="yes"' in page


def pickled(path) -> bool:
    """A pickle stream (protocol 2+), or a zip (npz, torch) with a pickle member or object array."""
    import io
    import zipfile

    def stream(head: bytes) -> bool:
        return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5

    if stream(path.read_bytes()[:2]):
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                data = z.read(member)
                if member.endswith((".pkl", ".pickle")) or stream(data[:2]):
                    return True
                if member.endswith(".npy"):
                    try:
                        np.load(io.BytesIO(data), allow_pickle=False)
                    except ValueError:  # an object array: only loadable by unpickling
                        return True
    return False


def test_what_consumers_download_holds_no_pickle(published, tmp_path):
    """The registered generator and feature extractor as a consumer downloads them, and every
    catalog file: no pickle stream, no zip member that is one, no object array."""
    from pathlib import Path

    from mlflow.artifacts import download_artifacts

    files = []
    for uri in ("models:/e2e-generator@champion", "models:/e2e-features/1"):
        dst = download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / uri.split("/")[1].split("@")[0]))
        files += [p for p in Path(dst).rglob("*") if p.is_file()]
    files += [p for p in (settings.home() / "catalog").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"generator.npz", "extractor.npz", "data.npz", "manifest.json", "MLmodel"} <= names
    assert [p for p in files if pickled(p)] == []
    # the check itself sees pickles: a torch checkpoint (a zip around data.pkl) is one
    torch_file = tmp_path / "t.pt"
    import torch

    torch.save({"w": torch.zeros(2)}, torch_file)
    assert pickled(torch_file)


def test_flat_folder_trains_an_unconditional_model(prefect_server, tmp_path):
    """A flat folder of colour images of two sizes is an unlabelled source: the default model
    for it (the DCGAN) trains unconditionally and what it publishes has no labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from flows.params import DCGANParams

    root = tmp_path / "flat"
    root.mkdir()
    digits = np.round(load_digits().images[:60] * 255 / 16).astype(np.uint8)
    for i, d in enumerate(digits):  # tinted digits, two sizes
        size = (12, 12) if i % 3 else (16, 12)
        Image.fromarray(np.stack([d, d // 2, 255 - d], -1)).resize(size).save(root / f"{i}.png")
    p = VirtualizeParams(source=str(root), name="flat", gate=LENIENT, train={"steps": 20, "batch_size": 16, "channels": 8},
                         evaluation=EvalParams(classifier_steps=20, num_samples=60), publication=PublishParams(n=20))
    assert isinstance(p.train, DCGANParams)
    result = virtualize(p)
    assert "tstr_accuracy" not in result["metrics"]
    params = client().get_run(result["run_id"]).data.params
    assert params["model.num_classes"] == "0" and params["model.kind"] == "dcgan"
    images, labels = catalog.load("flat", root=result["dataset"].rsplit("/", 2)[0])
    assert images.shape == (20, 3, 12, 12) and labels is None


def test_nothing_in_the_catalog_is_or_nearly_is_a_real_image(published, tmp_path, capsys):
    """Every image the consumer side holds (each version's data in each format, virtual ones
    materialised, and every preview tile) is farther than the near-copy threshold from every
    real train and holdout image; the previews are made of published samples only, and the
    pages embed no image."""
    from PIL import Image

    from gan.metrics.distances import nearest_images
    from snapshots import store as snapshots
    from tasks.report import class_grid

    assert main(["publish", "e2e", "-n", "30", "--seed", "3", "--format", "parquet"]) == 0
    assert main(["publish", "e2e", "-n", "30", "--seed", "4", "--virtual"]) == 0
    capsys.readouterr()
    root = settings.catalog_root()
    m = catalog.manifest(published["dataset"])
    real = snapshots.find(settings.snapshot_root(), m["source"]["fingerprint"]).load()["images"]
    for v in catalog.versions_of(root, "e2e"):
        out = tmp_path / f"v{v}"
        assert main(["pull", f"e2e@{v}", "--to", str(out)]) == 0
        manifest = catalog.manifest(out)
        images, labels = catalog.formats.read(manifest["format"], out)
        threshold = manifest["near_copies"]["threshold"]
        assert threshold > 0 and nearest_images(images, real).min() >= threshold, v
        preview = np.asarray(Image.open(out / "preview.png"))
        picture = class_grid(images, labels)
        scale = preview.shape[0] // picture.shape[0]
        np.testing.assert_array_equal(preview[::scale, ::scale].reshape(picture.shape), picture)
    pages = [p.read_text() for p in Path(root).rglob("*.html")]
    assert pages and not any("data:image" in page for page in pages)
