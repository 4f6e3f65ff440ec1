"""Register: log the generator as a pyfunc model, register it, move aliases by the gates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from prefect import task

import gan
from gan import checkpoint
from gan.models import ModelConfig
from ganvirt import settings
from ganvirt.gates import GateFailed, GatePolicy
from tasks.evaluate import Report
from tasks.tracking import client, model_name, run_logger
from tasks.train import CheckpointRef

MODEL_CODE = Path(__file__).with_name("generator_model.py")
REQUIREMENTS = ["torch>=2.4", "numpy", "pandas"]


@dataclass(frozen=True)
class ModelVersionRef:
    model: str          # registered model name, <name>-generator
    version: str
    run_id: str
    champion: bool


def signature(model: ModelConfig) -> ModelSignature:
    cols = [ColSpec("long", "seed")] + ([ColSpec("long", "label")] if model.conditional else [])
    out = TensorSpec(np.dtype(np.uint8), (-1, model.channels, model.height, model.width))
    return ModelSignature(inputs=Schema(cols), outputs=Schema([out]))


def example_input(model: ModelConfig) -> pd.DataFrame:
    frame = pd.DataFrame({"seed": np.array([0, 1], dtype=np.int64)})
    if model.conditional:
        frame["label"] = np.array([0, model.num_classes - 1], dtype=np.int64)
    return frame


@task(name="register")
def register(ckpt: CheckpointRef, report: Report, name: str, gate: GatePolicy) -> ModelVersionRef:
    """Register the run's generator as ``<name>-generator`` with alias ``candidate``; move
    ``champion`` to it only if every gate passes, else raise ``GateFailed`` naming the failures."""
    logger = run_logger()
    mlflow.set_tracking_uri(settings.tracking_uri())
    model = ModelConfig(**ckpt.model)
    registered = model_name(name)
    weights = checkpoint.export_generator(ckpt.path, Path(ckpt.path).with_name("generator.npz"))  # no pickle
    with mlflow.start_run(run_id=ckpt.run_id):
        info = mlflow.pyfunc.log_model(
            name="generator", python_model=str(MODEL_CODE),
            artifacts={"generator": str(weights)}, code_paths=[str(Path(gan.__file__).parent)],
            signature=signature(model), input_example=example_input(model),
            pip_requirements=REQUIREMENTS)
    verdicts = gate.thresholds(report.metrics, model.conditional)
    failures = gate.failures(report.metrics, model.conditional)
    mv = mlflow.register_model(info.model_uri, registered,
                               tags={**{k: f"{v:.6g}" for k, v in report.metrics.items() if ".class_" not in k},
                                     "extractor_hash": report.extractor_hash,
                                     "gates": "passed" if not failures else "failed"})
    c = client()
    summary = ", ".join(f"{k} {v:.4g}" for k, v in report.metrics.items() if ".class_" not in k)
    c.update_model_version(registered, mv.version, description=(
        f"GAN generator ({model.kind}, {'conditional' if model.conditional else 'unconditional'}, "
        f"{model.channels}x{model.height}x{model.width}) for dataset '{name}'. {summary}. "
        f"Gates: {'passed' if not failures else 'failed: ' + '; '.join(failures)}. "
        f"Input: table of seed{' and label' if model.conditional else ''}; output uint8 images."))
    c.set_registered_model_alias(registered, "candidate", mv.version)
    logger.info("registered %s version %s as candidate; gates %s", registered, mv.version,
                {k: ("pass" if v["passed"] else "FAIL") for k, v in verdicts.items()})
    if failures:
        raise GateFailed(f"{registered} v{mv.version} failed its gates: {'; '.join(failures)}; "
                         "champion and catalog left unchanged")
    c.set_registered_model_alias(registered, "champion", mv.version)
    logger.info("%s version %s is now champion", registered, mv.version)
    return ModelVersionRef(registered, str(mv.version), ckpt.run_id, True)
