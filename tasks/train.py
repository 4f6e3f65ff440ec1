"""Train: fit the GAN on a snapshot's train split inside an MLflow run; return a checkpoint ref."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
import torch
from mlflow.entities import Metric
from prefect import task
from tqdm.auto import tqdm

from gan import checkpoint
from gan.models import ModelConfig
from gan.train import TrainConfig, train
from ganvirt import settings
from ganvirt.snapshots import Snapshot
from tasks.tracking import client, experiment_id, run_logger

FLUSH_EVERY = 20  # reports per MLflow batch write: live curves without a write per step


@dataclass(frozen=True)
class CheckpointRef:
    run_id: str      # the MLflow run that trained it
    path: str        # local checkpoint file (also logged to the run)
    model: dict      # ModelConfig as a dict
    name: str        # dataset name (= experiment name)


@task(name="train")
def train_gan(snapshot: Snapshot, name: str, cfg: TrainConfig, model_kind: str = "mlp",
              conditional: bool | None = None, device: str = "cpu") -> CheckpointRef:
    """Train on the snapshot's train split; log params, losses and sample grids to MLflow."""
    logger = run_logger()
    if conditional is None:
        conditional = snapshot.num_classes >= 2
    if conditional and snapshot.num_classes < 2:
        raise ValueError(f"source {snapshot.source!r} has {snapshot.num_classes} class(es): a "
                         "conditional run needs labels of at least 2 classes (use --no-conditional)")
    c, h, w = snapshot.shape
    model = ModelConfig(kind=model_kind, channels=c, height=h, width=w,
                        num_classes=snapshot.num_classes if conditional else 0)
    data = snapshot.load()
    images = torch.from_numpy(data["images"][data["train"]])
    labels = torch.from_numpy(data["labels"][data["train"]]) if conditional else None

    mlflow.set_tracking_uri(settings.tracking_uri())
    tracker = client()
    with mlflow.start_run(experiment_id=experiment_id(name),
                          run_name=f"{name} · seed {cfg.seed}") as run:
        mlflow.log_params({**{f"train.{k}": v for k, v in cfg.to_dict().items()},
                           **{f"model.{k}": v for k, v in model.to_dict().items()},
                           "source": snapshot.source, "snapshot": snapshot.fingerprint,
                           "num_train": snapshot.num_train, "num_holdout": snapshot.num_holdout})
        mlflow.set_tags({"ganvirt.dataset": name, "ganvirt.stage": "train"})
        pending: list[Metric] = []
        bar = tqdm(total=cfg.steps, desc=f"train {name}", unit="step", mininterval=1.0)

        def report(key: str, value: float, step: int) -> None:
            pending.append(Metric(key, value, int(1000 * time.time()), step))
            if key == "loss_d":
                bar.update(step - bar.n)
                bar.set_postfix(loss_d=f"{value:.3f}")
            if len(pending) >= 4 * FLUSH_EVERY:
                tracker.log_batch(run.info.run_id, metrics=pending)
                pending.clear()

        def report_grid(picture, step: int) -> None:
            mlflow.log_image(picture.squeeze(-1) if picture.shape[-1] == 1 else picture,
                             artifact_file=f"samples/step_{step:07d}.png")

        try:
            result = train(cfg, model, images, labels, device=device, report=report,
                           report_grid=report_grid)
        finally:
            bar.close()
            if pending:
                tracker.log_batch(run.info.run_id, metrics=pending)
        path = settings.home() / "checkpoints" / run.info.run_id / "generator.pt"
        checkpoint.save(path, model, result.ema, generator=result.generator,
                        discriminator=result.discriminator, train=cfg.to_dict(), step=result.steps)
        mlflow.log_artifact(str(path), artifact_path="checkpoint")
        logger.info("trained %d steps; final losses %s; run %s", result.steps,
                    {k: round(v, 4) for k, v in result.losses.items()}, run.info.run_id)
    return CheckpointRef(run.info.run_id, str(path), model.to_dict(), name)
