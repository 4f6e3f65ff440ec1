"""Train: fit the GAN on a snapshot's train split inside an MLflow run; return a checkpoint ref.

An interrupted run resumes: the same snapshot and configuration map to one resume folder
(``<home>/checkpoints/resume-<key>/``) holding the training state and the MLflow run id, so
running the same ``ganvirt run`` again continues that run from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric
from mlflow.types import Schema, TensorSpec
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from tqdm.auto import tqdm

from gan import checkpoint
from gan import launch as launcher
from gan.evaluate import EvalConfig, make_probe, real_split
from gan.models import ModelConfig
from gan.private import Privacy, private_model
from gan.train import Diverged, TrainConfig, train
from tasks import privacy
from tasks.features import extractor_folder, extractor_for
from tasks.home import home, tracking_uri
from tasks.refs import CheckpointRef, Snapshot
from tasks.tracking import (
    client,
    experiment_id,
    in_prefect_run,
    link_artifact,
    link_prefect_run,
    run_logger,
)

FLUSH_EVERY = 20  # reports per MLflow batch write: live curves without a write per step


def pick_device(device: str) -> torch.device:
    """``auto`` → cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; choose from ['auto', 'cpu', 'cuda', 'mps']")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    return torch.device(device)


def model_config(snapshot: Snapshot, kind: str, conditional: bool | None, width: int | None,
                 private: bool = False) -> ModelConfig:
    """The model for the snapshot. Under DP (``private``) D judges each image alone (no
    minibatch standard deviation, which mixes images and would void per-image clipping) and
    is as small as the DP recipe was measured with (``gan.private.private_model``)."""
    if conditional is None:
        conditional = snapshot.num_classes >= 2
    if conditional and snapshot.num_classes < 2:
        raise ValueError(f"source {snapshot.source!r} has {snapshot.num_classes} class(es): a "
                         "conditional run needs labels of at least 2 classes (use --no-conditional)")
    c, h, w = snapshot.shape
    hidden = width or (64 if kind == "dcgan" else 128)
    model = ModelConfig(kind=kind, channels=c, height=h, width=w, hidden=hidden,
                        num_classes=snapshot.num_classes if conditional else 0)
    return private_model(model) if private else model


def resume_folder(snapshot: Snapshot, cfg: TrainConfig, model: ModelConfig, nproc: int = 1) -> Path:
    key = json.dumps([snapshot.fingerprint, cfg.to_dict(), model.to_dict()] + ([nproc] if nproc > 1 else []),
                     sort_keys=True)
    return home() / "checkpoints" / f"resume-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@task(name="train")
def train_gan(snapshot: Snapshot, name: str, cfg: TrainConfig, model_kind: str = "mlp",
              conditional: bool | None = None, device: str = "cpu", width: int | None = None,
              evaluation: EvalConfig | None = None, nproc: int = 1, epsilon_budget: float | None = None) -> CheckpointRef:
    """Train on the snapshot's train split; log params, losses, probe scores and sample grids to
    MLflow; keep the best EMA generator by the probe when ``cfg.probe_every`` is set. With
    ``nproc`` > 1, train with DDP in that many processes started by ``torchrun`` (one per GPU
    on CUDA; gloo processes on CPU). A DP run (``cfg.dp_epsilon``) that would take the source's
    ε past ``epsilon_budget`` is refused before anything is written."""
    logger = run_logger()
    model = model_config(snapshot, model_kind, conditional, width, private=bool(cfg.dp_epsilon))
    dev = pick_device(device)
    if nproc > 1 and cfg.batch_size % nproc:
        raise ValueError(f"batch size {cfg.batch_size} must divide by the {nproc} training processes")
    folder = resume_folder(snapshot, cfg, model, nproc)
    run_id = (folder / "run_id").read_text().strip() if (folder / "run_id").exists() else None
    if run_id:
        logger.info("resuming run %s from %s", run_id, folder / "state.pt")
    mlflow.set_tracking_uri(tracking_uri())
    privacy.check_budget(snapshot.fingerprint, cfg.dp_epsilon, privacy.budget(epsilon_budget), exclude_run=run_id)
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id(name),
                          run_name=None if run_id else f"{name} · {model.kind} · seed {cfg.seed}") as run:
        if not run_id:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "run_id").write_text(run.info.run_id)
            _log_params(snapshot, name, cfg, model, dev, nproc)
        link_prefect_run()
        link_artifact(name, "mlflow-run", f"experiments/{run.info.experiment_id}/runs/{run.info.run_id}",
                      f"MLflow run {run.info.run_name or run.info.run_id}")
        path = home() / "checkpoints" / run.info.run_id / "generator.pt"
        with _Reporter(run.info.run_id, name, cfg) as rep:
            try:
                spent = None
                if nproc > 1:
                    steps, best_step, best_score = _train_torchrun(snapshot, cfg, model, dev, nproc, folder,
                                                                   path, evaluation, rep, logger)
                else:
                    steps, best_step, best_score, spent = _train_here(snapshot, cfg, model, dev, folder, path,
                                                                      evaluation, rep)
            except Diverged as exc:
                raise Diverged(exc.step, f"{exc.what} (last good checkpoint: {folder / 'state.pt'})") from None
        mlflow.log_artifact(str(path), artifact_path="checkpoint")
        if best_step is not None:
            mlflow.log_metrics({"best_step": best_step, "best_probe_score": best_score})
        if spent is not None:
            mlflow.log_params(privacy.facts(spent))
            logger.info("DP-SGD: ε %.4g at δ %.3g spent on the train split (σ %.4g, q %.4g, %d steps, %s accountant)",
                        spent.epsilon, spent.delta, spent.noise_multiplier, spent.sample_rate, spent.steps,
                        spent.accountant)
        logger.info("trained %d steps (%s images); best probe %s at step %s; run %s", steps,
                    steps * cfg.batch_size, best_score, best_step, run.info.run_id)
    shutil.rmtree(folder, ignore_errors=True)  # finished: a later identical run trains anew
    return CheckpointRef(run.info.run_id, str(path), model.to_dict(), name, spent.to_dict() if spent else None)


def _train_here(snapshot: Snapshot, cfg: TrainConfig, model: ModelConfig, dev, folder: Path, path: Path,
                evaluation: EvalConfig | None, rep: _Reporter) -> tuple[int, int | None, float | None, Privacy | None]:
    """Train in this process; writes the serving checkpoint to ``path``."""
    xt, yt, _, _ = real_split(snapshot.load())
    probe = None
    if cfg.probe_every:
        extractor = extractor_for(snapshot, evaluation or EvalConfig())[0]
        probe = make_probe(extractor, xt, yt, seed=cfg.seed)
    result = train(cfg, model, torch.from_numpy(xt), torch.from_numpy(yt) if model.conditional else None,
                   device=dev, report=rep.report, report_grid=rep.grid, probe=probe,
                   checkpoint_path=folder / "state.pt")
    checkpoint.save(path, model, result.ema.cpu(), train=cfg.to_dict(), step=result.steps)
    return result.steps, result.best_step, result.best_score, result.privacy


def _train_torchrun(snapshot: Snapshot, cfg: TrainConfig, model: ModelConfig, dev, nproc: int, folder: Path,
                    path: Path, evaluation: EvalConfig | None, rep: _Reporter, logger) -> tuple[int, int | None, float | None]:
    """Train in ``nproc`` DDP processes (``gan.launch``); replay their reports into MLflow."""
    extractor = None
    if cfg.probe_every:
        ev = evaluation or EvalConfig()
        extractor_for(snapshot, ev)  # trained and cached here, loaded by every rank
        meta = json.loads((extractor_folder(snapshot, ev) / "meta.json").read_text())
        extractor = {"weights": str(extractor_folder(snapshot, ev) / "extractor.pt"), "channels": meta["channels"],
                     "outputs": meta["outputs"], "feature_dim": meta["feature_dim"],
                     "stages": meta.get("stages", 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = launcher.write_spec(folder / "torchrun", data=str(snapshot.path), train_cfg=cfg,
                               model=model, device=dev.type, out=str(path),
                               checkpoint_path=str(folder / "state.pt"), extractor=extractor)
    result = launcher.launch(spec, nproc, log=logger.info)
    for line in (spec.parent / "reports.jsonl").read_text().splitlines():
        r = json.loads(line)
        rep.report(r["key"], r["value"], r["step"])
    for grid_file in sorted(spec.parent.glob("grid-*.npy")):
        rep.grid(np.load(grid_file, allow_pickle=False), int(grid_file.stem.split("-")[1]))
    return result["steps"], result["best_step"], result["best_score"]


def _log_params(snapshot: Snapshot, name: str, cfg: TrainConfig, model: ModelConfig, dev, nproc: int) -> None:
    mlflow.log_params({**{f"train.{k}": v for k, v in cfg.to_dict().items()},
                       **{f"model.{k}": v for k, v in model.to_dict().items()},
                       "source": snapshot.source, "snapshot": snapshot.fingerprint, "device": str(dev), "nproc": nproc,
                       "num_train": snapshot.num_train, "num_holdout": snapshot.num_holdout,
                       **privacy.start_params(cfg, snapshot.num_train)})
    mlflow.set_tags({"ganvirt.dataset": name, "ganvirt.stage": "train"})
    c, h, w = snapshot.shape
    schema = Schema([TensorSpec(np.dtype(np.uint8), (-1, c, h, w), "images")])
    # what the MLflow UI shows this generator was trained on; MLflow keeps 36 characters of a
    # digest: the fingerprint's first 36 (the whole one is the run's `snapshot` param)
    with warnings.catch_warnings():  # MLflow 3 registers its local-file source twice (schemes "" and
        # "file") and warns on every local path that both match; they are the same class
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(str(snapshot.path))
    mlflow.log_input(MetaDataset(source, name=f"{name} train split", digest=snapshot.fingerprint[:36], schema=schema),
                     context="training")


class _Reporter:
    """Progress bar (images/s, latest probe) and batched MLflow metric writes."""

    def __init__(self, run_id: str, name: str, cfg: TrainConfig):
        self.run_id, self.cfg = run_id, cfg
        self.tracker = client()
        self.pending: list[Metric] = []
        self.bar = tqdm(total=cfg.steps * cfg.batch_size, desc=f"train {name}", unit="img",
                        unit_scale=True, mininterval=2.0)
        self.post: dict[str, str] = {}
        self.progress = None  # the Prefect progress artifact, inside a flow run
        if in_prefect_run():
            self.progress = (create_progress_artifact(0.0, description=f"training {name}: images seen"), 0.0)

    def report(self, key: str, value: float, step: int) -> None:
        self.pending.append(Metric(key, value, int(1000 * time.time()), step))
        if key == "images_seen":
            self.bar.update(int(value) - self.bar.n)
            self.show_progress(100.0 * value / (self.cfg.steps * self.cfg.batch_size))
        elif key in ("loss_d", "probe_score"):
            self.post[key] = f"{value:.3f}"
            self.bar.set_postfix(self.post, refresh=False)
        if len(self.pending) >= 5 * FLUSH_EVERY:
            self.flush()

    def grid(self, picture, step: int) -> None:
        """A grid of EMA samples, under one key so that the MLflow UI's step slider walks them."""
        mlflow.log_image(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, key="samples", step=step)

    def show_progress(self, percent: float) -> None:
        """Move the Prefect progress artifact, by whole percents at least (one API call each)."""
        if self.progress is not None and (percent - self.progress[1] >= 1 or percent >= 100):
            update_progress_artifact(self.progress[0], min(percent, 100.0))
            self.progress = (self.progress[0], percent)

    def flush(self) -> None:
        if self.pending:
            self.tracker.log_batch(self.run_id, metrics=self.pending)
            self.pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.flush()
