"""The published-dataset catalog (no Prefect, no MLflow): store, manifests, pull, load."""

from catalog.store import (
    CatalogError,
    manifest,
    names,
    parse_ref,
    publish,
    pull,
    resolve,
    verify,
    versions_of,
)

__all__ = ["CatalogError", "manifest", "names", "parse_ref", "publish", "pull", "resolve",
           "verify", "versions_of", "load"]


def load(root, name: str, version: int | None = None):
    """(images uint8 (N, C, H, W), labels int64 (N,) or None) of a published, verified version."""
    import numpy as np

    folder = resolve(root, name, version)
    verify(folder)
    with np.load(folder / "data.npz", allow_pickle=False) as z:
        return z["images"], (z["labels"] if "labels" in z.files else None)
