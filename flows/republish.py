"""The ``republish`` flow: a new dataset version sampled from the current champion, no training."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field

from catalog import check_name
from flows.publication import publish_dataset, task_runner
from tasks import locks


class RepublishParams(BaseModel):
    name: str = Field("digits", description="dataset name; samples models:/<name>-generator@champion")
    n: int = Field(10_000, ge=1, le=10_000_000, description="images in the new version")
    seed: int = Field(0, ge=0, description="image i uses seed + i")
    format: Literal["npz", "png", "parquet"] = Field("npz", description="file format of the new version")
    virtual: bool = Field(False, description="a manifest only; 'ganvirt pull' materialises it from the registry")


@flow(name="republish", log_prints=True, flow_run_name="{p.name} · republish",
      task_runner=task_runner())
def republish(p: RepublishParams = RepublishParams()) -> str:
    """Publish ``p.n`` images of the current champion as a new version of dataset ``p.name``."""
    name = check_name(p.name)
    with locks.held(f"name:{name}", log=print):  # not while a virtualize run moves the champion
        return publish_dataset(name, p.n, p.seed, fmt=p.format, virtual=p.virtual)
