"""The pinned feature extractor of a snapshot: trained once, cached by snapshot and budget,
identified by the sha256 of its weights, registered in MLflow as ``<name>-features``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

import gan
import registry
from gan import checkpoint
from gan.evaluate import EvalConfig, fit_extractor
from gan.features import FLIPS, SmallCNN, stages_for, state_hash
from registry.generators import TORCH, features_name
from tasks.home import home
from tasks.refs import Snapshot
from tasks.tracking import client, experiment_id

EXTRACTOR_CODE = Path(registry.__file__).with_name("extractor_model.py")  # logged as code: no pickle


def extractor_folder(snapshot: Snapshot, cfg: EvalConfig) -> Path:
    """Where the extractor of this snapshot and classifier budget is cached."""
    c = cfg.classifier
    stages = stages_for(*snapshot.shape[1:])
    deeper = f"-d{stages}" if stages > 1 else ""  # above 32 px: deeper than extractors cached before
    return home() / "extractors" / (f"{Path(snapshot.path).name}-c{c.steps}x{c.batch_size}"
                                    f"-lr{c.lr:g}-{c.schedule}-f{c.feature_dim}-s{c.seed}{deeper}")


def extractor_for(snapshot: Snapshot, cfg: EvalConfig) -> tuple[SmallCNN, str, float | None, bool]:
    """The snapshot's extractor, trained once and cached beside the snapshots.

    Returns (extractor, weight hash, TRTR accuracy or None, whether it was taken from the cache).
    """
    folder = extractor_folder(snapshot, cfg)
    outputs = snapshot.num_classes if snapshot.num_classes >= 2 else FLIPS
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        model = SmallCNN(snapshot.shape[0], outputs, cfg.classifier.feature_dim, meta.get("stages", 1))
        model.load_state_dict(torch.load(folder / "extractor.pt", weights_only=True))
        model.eval().requires_grad_(False)
        if state_hash(model) == meta["hash"]:
            return model, meta["hash"], meta["trtr_accuracy"], True
    data = snapshot.load()
    if snapshot.num_classes < 2:
        data["labels"] = None
    model, trtr = fit_extractor(data, snapshot.num_classes, cfg)
    digest = state_hash(model)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / "extractor.pt", lambda p: torch.save(model.state_dict(), p))
    _atomic_write(folder / "meta.json", lambda p: p.write_text(json.dumps(
        {"hash": digest, "trtr_accuracy": trtr, "snapshot": snapshot.fingerprint,
         "classifier": cfg.classifier.to_dict(), "channels": snapshot.shape[0], "outputs": outputs,
         "feature_dim": cfg.classifier.feature_dim, "stages": model.stages})))
    return model, digest, trtr, False


def register_extractor(name: str, snapshot: Snapshot, cfg: EvalConfig, model: SmallCNN, digest: str) -> str:
    """Register ``model`` (this snapshot's extractor, weight hash ``digest``) as
    ``<name>-features`` once per weight hash; returns its version."""
    registered = features_name(name)
    c = client()
    found = c.search_model_versions(f"name='{registered}' and tags.extractor_hash='{digest}'")
    if found:
        return str(found[0].version)
    folder = extractor_folder(snapshot, cfg)
    c_, h, w = snapshot.shape
    weights = folder / "extractor.npz"  # what consumers download: arrays only, no pickle
    checkpoint.save_weights(weights, model.state_dict(), {"hash": digest})  # atomic
    with mlflow.start_run(experiment_id=experiment_id(name), run_name=f"features · {digest[:12]}"):
        mlflow.set_tags({"ganvirt.dataset": name, "ganvirt.stage": "features", "ganvirt.extractor_hash": digest})
        info = mlflow.pyfunc.log_model(
            name="extractor", python_model=str(EXTRACTOR_CODE),
            artifacts={"weights": str(weights), "meta": str(folder / "meta.json")},
            code_paths=[str(Path(gan.__file__).parent)],
            signature=ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, c_, h, w))]),
                                     outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, cfg.classifier.feature_dim))])),
            input_example=np.zeros((1, c_, h, w), dtype=np.uint8),  # a blank image: no real pixels in the registry
            pip_requirements=[TORCH, "numpy"])
    mv = mlflow.register_model(info.model_uri, registered, tags={"extractor_hash": digest,
                                                                   "snapshot": snapshot.fingerprint})
    return str(mv.version)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
