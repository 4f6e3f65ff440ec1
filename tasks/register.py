"""Register: log the generator as a pyfunc model, register it, move aliases by the gates."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import task

from gan import checkpoint
from gan.models import ModelConfig
from registry.generators import log_generator, model_name
from tasks.gates import GateFailed, GatePolicy
from tasks.home import tracking_uri
from tasks.privacy import COVERS
from tasks.refs import CheckpointRef, ModelVersionRef, Report
from tasks.tracking import client, link_artifact, run_logger


@task(name="register")
def register(ckpt: CheckpointRef, report: Report, name: str, gate: GatePolicy) -> ModelVersionRef:
    """Register the run's generator as ``<name>-generator`` with alias ``candidate``; move
    ``champion`` to it only if every gate passes, else raise ``GateFailed`` naming the failures."""
    logger = run_logger()
    mlflow.set_tracking_uri(tracking_uri())
    model = ModelConfig.from_dict(ckpt.model)
    registered = model_name(name)
    weights = checkpoint.export_generator(ckpt.path, Path(ckpt.path).with_name("generator.npz"))  # no pickle
    with mlflow.start_run(run_id=ckpt.run_id):
        info = log_generator(weights, model)
    verdicts = gate.thresholds(report.metrics, model.conditional)
    failures = gate.failures(report.metrics, model.conditional)
    mv = mlflow.register_model(info.model_uri, registered,
                               tags={**{k: f"{v:.6g}" for k, v in report.metrics.items() if ".class_" not in k},
                                     "extractor_hash": report.extractor_hash,
                                     "gates": "passed" if not failures else "failed",
                                     **_privacy_tags(ckpt)})
    c = client()
    summary = ", ".join(f"{k} {v:.4g}" for k, v in report.metrics.items() if ".class_" not in k)
    c.update_model_version(registered, mv.version, description=(
        f"GAN generator ({model.kind}, {'conditional' if model.conditional else 'unconditional'}, "
        f"{model.channels}x{model.height}x{model.width}) for dataset '{name}'. {summary}. "
        f"Gates: {'passed' if not failures else 'failed: ' + '; '.join(failures)}. "
        f"{_privacy_text(ckpt)} "
        f"Input: table of seed{' and label' if model.conditional else ''}; output uint8 images."))
    c.set_registered_model_alias(registered, "candidate", mv.version)
    link_artifact(name, "model-version", f"models/{registered}/versions/{mv.version}", f"{registered} version {mv.version}")
    logger.info("registered %s version %s as candidate; gates %s", registered, mv.version,
                {k: ("pass" if v["passed"] else "FAIL") for k, v in verdicts.items()})
    if failures:
        raise GateFailed(f"{registered} v{mv.version} failed its gates: {'; '.join(failures)}; "
                         "champion and catalog left unchanged")
    c.set_registered_model_alias(registered, "champion", mv.version)
    logger.info("%s version %s is now champion", registered, mv.version)
    return ModelVersionRef(registered, str(mv.version), ckpt.run_id, True)


def _privacy_tags(ckpt: CheckpointRef) -> dict[str, str]:
    """A DP version's ε, δ, noise multiplier, sampling rate, steps, accountant, and the source
    they cover, as version tags (``epsilon`` "none" without DP)."""
    if not ckpt.privacy:
        return {"dp.epsilon": "none"}
    fingerprint = client().get_run(ckpt.run_id).data.params.get("snapshot", "?")
    return {f"dp.{k}": str(v) for k, v in ckpt.privacy.items()} | {"dp.source_fingerprint": fingerprint,
                                                                     "dp.covers": COVERS}


def _privacy_text(ckpt: CheckpointRef) -> str:
    if not ckpt.privacy:
        return "No formal privacy guarantee (trained without DP)."
    p = ckpt.privacy
    return (f"Differentially private: ε {p['epsilon']:.4g}, δ {p['delta']:.3g} over {COVERS}; "
            "its evaluation used the real holdout, outside that guarantee.")
