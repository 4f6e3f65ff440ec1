"""Gates with real models, no mocks: a near-copy generator fails privacy, a collapsed one fails
quality, a decent trained one passes; every failure leaves champion and catalog unchanged."""

import mlflow
import pytest
import torch
from torch import nn

import catalog
import gan.models
from gan import checkpoint
from gan.evaluate import EvalConfig
from gan.models import ModelConfig
from gan.train import TrainConfig
from ganvirt import settings
from tasks.evaluate import evaluate
from tasks.gates import GateFailed, GatePolicy
from tasks.ingest import ingest
from tasks.publish import commit, plan, sample_shard
from tasks.refs import CheckpointRef
from tasks.register import register
from tasks.tracking import client, experiment_id
from tasks.train import train_gan

pytestmark = pytest.mark.slow
NAME = "gates"
EVAL = EvalConfig(num_samples=2000)
POLICY = GatePolicy()  # the defaults users get
TRAIN: dict[str, torch.Tensor] = {}  # real train images/labels the copy generator draws from


class NearCopyGenerator(nn.Module):
    """Returns a training image of the asked class (picked by the noise) plus tiny noise."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, z, labels):
        x, y = TRAIN["images"], TRAIN["labels"]
        out = []
        for zi, label in zip(z, labels):
            pool = torch.nonzero(y == label).flatten()
            pick = pool[int(abs(float(zi[0])) * 1e6) % len(pool)]
            out.append((x[pick] + 0.01 * zi[1:1 + x[0].numel()].view_as(x[pick])).clamp(0, 1))
        return torch.stack(out)


class CollapsedGenerator(nn.Module):
    """One smooth blob, whatever the noise and label."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.blob = nn.Parameter(torch.full((cfg.channels, cfg.height, cfg.width), 0.4))

    def forward(self, z, labels=None):
        return self.blob.expand(len(z), -1, -1, -1)


@pytest.fixture(scope="module")
def snapshot():
    snap = ingest.fn("digits")
    data = snap.load()
    TRAIN["images"] = torch.from_numpy(data["images"][data["train"]]).float() / 255
    TRAIN["labels"] = torch.from_numpy(data["labels"][data["train"]])
    return snap


@pytest.fixture(scope="module")
def champion(snapshot):
    ckpt = train_gan.fn(snapshot, NAME, TrainConfig(steps=6000, grid_every=0))
    report = evaluate.fn(ckpt, snapshot, EVAL, POLICY)
    version = register.fn(ckpt, report, NAME, POLICY)  # a decent generator passes every gate
    p = plan.fn(NAME, n=200, expected_version=version.version)
    folder = commit.fn(p, [sample_shard.fn(p, i) for i in p.shards])
    return version, folder, report


def fake_checkpoint(kind: str, module_cls, snapshot, monkeypatch) -> CheckpointRef:
    monkeypatch.setitem(gan.models.MODELS, kind, (module_cls, module_cls))
    c, h, w = snapshot.shape
    cfg = ModelConfig(kind=kind, channels=c, height=h, width=w, num_classes=snapshot.num_classes)
    mlflow.set_tracking_uri(settings.tracking_uri())
    with mlflow.start_run(experiment_id=experiment_id(NAME), run_name=kind) as run:
        mlflow.log_param("snapshot", snapshot.fingerprint)  # what training records: publication finds the data
        path = settings.home() / "checkpoints" / run.info.run_id / "generator.pt"
        checkpoint.save(path, cfg, module_cls(cfg))
    return CheckpointRef(run.info.run_id, str(path), cfg.to_dict(), NAME)


def test_decent_generator_passes(champion):
    version, folder, report = champion
    assert not POLICY.failures(report.metrics, conditional=True), report.metrics
    assert catalog.verify(folder)["thresholds"]["mia_auc"]["passed"]


@pytest.mark.parametrize("kind,module_cls,failing", [
    ("near-copy", NearCopyGenerator, {"near_copy_share", "mia_auc"}),
    ("collapsed", CollapsedGenerator, {"fid_like", "recall", "tstr_accuracy"}),
])
def test_bad_generator_fails_and_changes_nothing(kind, module_cls, failing, champion, snapshot, monkeypatch):
    version, _, _ = champion
    before = catalog.versions_of(settings.catalog_root(), NAME)
    ckpt = fake_checkpoint(kind, module_cls, snapshot, monkeypatch)
    report = evaluate.fn(ckpt, snapshot, EVAL, POLICY)
    failed = {line.split("=")[0] for line in POLICY.failures(report.metrics, conditional=True)}
    assert failing <= failed, report.metrics
    with pytest.raises(GateFailed) as err:
        register.fn(ckpt, report, NAME, POLICY)
    for metric in failing:
        assert f"{metric}=" in str(err.value)
    assert str(client().get_model_version_by_alias(f"{NAME}-generator", "champion").version) == version.version
    assert catalog.versions_of(settings.catalog_root(), NAME) == before


def test_a_generator_of_near_copies_is_stopped_at_publication_when_the_gates_let_it_through(
        champion, snapshot, monkeypatch):
    """With every gate opened, the near-copy generator becomes champion, but its publication
    fails: each sample, and each replacement seed tried for it, is a near copy of a real image.
    Nothing is published."""
    from registry.generators import NearCopies
    from tests.conftest import open_gates

    before = catalog.versions_of(settings.catalog_root(), NAME)
    ckpt = fake_checkpoint("near-copy", NearCopyGenerator, snapshot, monkeypatch)
    report = evaluate.fn(ckpt, snapshot, EVAL, open_gates())
    version = register.fn(ckpt, report, NAME, open_gates())
    p = plan.fn(NAME, n=50, expected_version=version.version)
    with pytest.raises(NearCopies, match="image 0 and 100 replacement seeds were all near copies"):
        commit.fn(p, [sample_shard.fn(p, i) for i in p.shards])
    assert catalog.versions_of(settings.catalog_root(), NAME) == before
