"""The published-dataset catalog (no Prefect, no MLflow): store, formats, manifests, pages,
pull, and loaders for consumers.

    import catalog
    images, labels = catalog.load("digits")          # latest version, verified
    frame = catalog.to_pandas("digits", version=2)   # one row per image
    from catalog.torch import SyntheticDataset       # a torch Dataset (needs torch)
"""

from catalog.consume import load, pull, to_pandas
from catalog.formats import FORMATS, content_sha256
from catalog.store import (
    CatalogError,
    check_name,
    default_root,
    manifest,
    names,
    parse_ref,
    publish,
    resolve,
    verify,
    versions_of,
)

__all__ = ["CatalogError", "FORMATS", "check_name", "content_sha256", "default_root", "load", "manifest",
           "names", "parse_ref", "publish", "pull", "resolve", "to_pandas", "verify", "versions_of"]
