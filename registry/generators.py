"""Registered generators: their names, their MLflow signature, logging one, loading a version,
sampling a publication from it and materialising a virtual dataset.

No Prefect here: a consumer loads ``models:/<name>-generator@champion`` with this module and
MLflow alone. The tracking URI is MLflow's own (``MLFLOW_TRACKING_URI`` or
``mlflow.set_tracking_uri``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema, TensorSpec

import gan
from gan.config import LEGACY, ModelConfig
from gan.sampling import balanced_labels, sample_seeds

MODEL_CODE = Path(__file__).with_name("generator_model.py")  # logged as code: no pickle
# the torch that trained it, pinned: a consumer's environment (mlflow models serve, a Docker
# image from the model) reproduces the same pixels only with the same kernels
TORCH = f"torch=={torch.__version__.split('+')[0]}"
REQUIREMENTS = [TORCH, "numpy", "pandas"]

# MLflow loads a model-from-code with a mock ``dbutils`` swapped into ``sys.modules`` and put
# back afterwards; two loads at once (shards on a thread pool) can leave the mock there for
# good. One load at a time per process.
LOADING = threading.Lock()


def model_name(name: str) -> str:
    """The registered generator of dataset ``name``."""
    return f"{name}-generator"


def features_name(name: str) -> str:
    """The registered feature extractor of dataset ``name``."""
    return f"{name}-features"


def signature(model: ModelConfig) -> ModelSignature:
    """Input: a table of ``seed`` (and ``label`` when conditional); output: uint8 images."""
    cols = [ColSpec("long", "seed")] + ([ColSpec("long", "label")] if model.conditional else [])
    out = TensorSpec(np.dtype(np.uint8), (-1, model.channels, model.height, model.width))
    return ModelSignature(inputs=Schema(cols), outputs=Schema([out]))


def example_input(model: ModelConfig) -> pd.DataFrame:
    frame = pd.DataFrame({"seed": np.array([0, 1], dtype=np.int64)})
    if model.conditional:
        frame["label"] = np.array([0, model.num_classes - 1], dtype=np.int64)
    return frame


class NotRegistered(LookupError):
    """The dataset has no registered generator, or none under the alias asked for."""


def version_of(name: str, alias: str = "champion"):
    """The model version of ``<name>-generator@<alias>``; ``NotRegistered`` names the dataset
    and what to run first when there is none."""
    client = MlflowClient()
    registered = model_name(name)
    try:
        return client.get_model_version_by_alias(registered, alias)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.get_registered_model(registered)
    except MlflowException:
        raise NotRegistered(f"dataset {name!r} has no generator in the MLflow registry at {mlflow.get_tracking_uri()} "
                            f"(no model {registered!r}): run 'ganvirt run --source SOURCE --name {name}' first") from None
    hint = "no version of it has passed the gates yet" if alias == "champion" else "that alias is not set"
    raise NotRegistered(f"dataset {name!r}: {registered} has no version with alias {alias!r} ({hint}); "
                        f"see 'ganvirt datasets' and the MLflow registry") from None


def log_generator(weights: Path, model: ModelConfig):
    """Log a generator (its pickle-free ``.npz`` weights) as a pyfunc model to the active run;
    returns MLflow's ``ModelInfo``."""
    return mlflow.pyfunc.log_model(
        name="generator", python_model=str(MODEL_CODE), artifacts={"generator": str(weights)},
        code_paths=[str(Path(gan.__file__).parent)], signature=signature(model),
        input_example=example_input(model), pip_requirements=REQUIREMENTS)


def load_pyfunc(uri: str):
    """The pyfunc model at ``uri`` (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``)."""
    with LOADING:
        return mlflow.pyfunc.load_model(uri)


def load_version(model: str, version: str):
    """The generator module of ``models:/<model>/<version>``."""
    return load_pyfunc(f"models:/{model}/{version}").unwrap_python_model().G


def publication_seeds(n: int, seed: int, lo: int = 0, hi: int | None = None,
                      replaced: dict[int, int] | None = None) -> np.ndarray:
    """The seeds of images ``[lo, hi)`` of a publication of ``n``: ``seed + i``, except where
    ``replaced`` (image → seed) says otherwise (near copies replaced at publication)."""
    hi = n if hi is None else hi
    seeds = seed + np.arange(lo, hi, dtype=np.int64)
    for i, s in (replaced or {}).items():
        if lo <= i < hi:
            seeds[i - lo] = s
    return seeds


def sample_publication(G, n: int, seed: int, lo: int = 0, hi: int | None = None,
                       replaced: dict[int, int] | None = None):
    """Images ``[lo, hi)`` of a publication of ``n``: image i uses seed ``seed + i`` (or its
    replacement) and the i-th label of the class-balanced mix, so any sharding (and any later
    materialisation) agrees."""
    hi = n if hi is None else hi
    labels = balanced_labels(n, G.cfg.num_classes)[lo:hi] if G.cfg.conditional else None
    return sample_seeds(G, publication_seeds(n, seed, lo, hi, replaced), labels), labels


class NearCopies(RuntimeError):
    """Replacements for a near copy were near copies too: the generator recalls its data."""


def replace_near_copies(G, n: int, seed: int, flagged: list[int], too_near, tries: int = 100) -> dict[int, int]:
    """A replacement seed for each flagged image, in image order: the next unused seed from
    ``seed + n`` upward whose sample ``too_near`` (uint8 (m, C, H, W) → bool (m,)) accepts, with
    the image's own label. Raises ``NearCopies`` when ``tries`` candidates for one image fail."""
    labels = balanced_labels(n, G.cfg.num_classes) if G.cfg.conditional else None
    replaced, candidate = {}, seed + n
    for i in flagged:
        for _ in range(tries):
            image = sample_seeds(G, np.array([candidate]), labels[i:i + 1] if labels is not None else None)
            candidate += 1
            if not too_near(image)[0]:
                replaced[i] = candidate - 1
                break
        else:
            raise NearCopies(f"image {i} and {tries} replacement seeds were all near copies of real records: the "
                             f"generator recalls its training data (or the data is noise-like, where any smooth "
                             f"sample is nearer a record than real records are to each other); nothing was published")
    return replaced


def replacements(m: dict) -> dict[int, int]:
    """A manifest's replaced seeds (image → seed); empty for versions published before the filter."""
    return {int(i): int(s) for i, s in ((m.get("near_copies") or {}).get("replacement_seeds") or {}).items()}


def materialise(m: dict):
    """A virtual manifest's images, sampled again from the registered generator it names, with
    its near copies' replacement seeds and its noise scheme: no real data is needed."""
    G = load_version(m["generator"]["model"], m["generator"]["version"])
    scheme = m.get("noise", LEGACY["noise"])  # manifests written before the field: the older scheme
    if G.cfg.noise != scheme:
        raise ValueError(f"manifest names noise scheme {scheme!r} but {m['generator']['model']} "
                         f"v{m['generator']['version']} samples with {G.cfg.noise!r}: it would not reproduce the dataset")
    return sample_publication(G, m["shape"][0], m["seed"], replaced=replacements(m))


def sample(name: str, alias: str, n: int, seed: int, label: int | None = None):
    """``n`` images of ``models:/<name>-generator@<alias>``: image i uses seed ``seed + i`` and
    ``label`` (conditional models; default: the class-balanced mix). Returns (images, labels or
    None, seeds, uri)."""
    version_of(name, alias)  # a clear error first, where there is nothing to load
    uri = f"models:/{model_name(name)}@{alias}"
    model = load_pyfunc(uri)
    cols = [c.name for c in model.metadata.get_input_schema().inputs]
    seeds = seed + np.arange(n, dtype=np.int64)
    frame = pd.DataFrame({"seed": seeds})
    labels = None
    if "label" in cols:
        labels = (np.full(n, label, dtype=np.int64) if label is not None
                  else balanced_labels(n, model.unwrap_python_model().G.cfg.num_classes))
        frame["label"] = labels
    elif label is not None:
        raise ValueError(f"{uri} is unconditional: --label does not apply")
    return model.predict(frame), labels, seeds, uri
