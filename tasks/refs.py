"""The references that cross task boundaries, in one place: each stage takes these from the
stage before and returns one (ids, paths, small dicts; never tensors or modules)."""

from __future__ import annotations

from dataclasses import dataclass

from snapshots.store import Snapshot

__all__ = ["CheckpointRef", "ModelVersionRef", "Plan", "Report", "Snapshot"]


@dataclass(frozen=True)
class CheckpointRef:
    """ingest → **train** → evaluate, register."""
    run_id: str      # the MLflow run that trained it
    path: str        # local checkpoint file (also logged to the run)
    model: dict      # ModelConfig as a dict
    name: str        # dataset name (= experiment name)
    privacy: dict | None = None  # gan.private.Privacy as a dict for a DP run


@dataclass(frozen=True)
class Report:
    """train → **evaluate** → register."""
    metrics: dict[str, float]   # see README "Metrics"; per-class keys contain ".class_"
    extractor_hash: str         # sha256 of the extractor weights that produced the scores
    run_id: str


@dataclass(frozen=True)
class ModelVersionRef:
    """evaluate → **register** → publish."""
    model: str          # registered model name, <name>-generator
    version: str
    run_id: str
    champion: bool


@dataclass(frozen=True)
class Plan:
    """A publication in progress (plan → sample shard → commit): which registered version to
    sample, and where shards go."""
    name: str
    model: str
    version: str
    n: int
    seed: int
    shard_size: int
    staging: str       # folder for the shards; every task runner's worker must reach it
    flow_run_id: str
    format: str = "npz"
    virtual: bool = False  # manifest and preview only: materialised from the registry on pull
    snapshot: str = ""     # the real data the samples are kept away from (the owner's side)
    near_copy_threshold: float = 0.0  # samples nearer a real image than this are replaced

    @property
    def shards(self) -> list[int]:
        return list(range(-(-self.n // self.shard_size)))
