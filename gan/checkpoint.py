"""Checkpoints are data, not code: plain dicts of tensors and numbers, loaded with
``weights_only=True``. One format serves both resuming (networks, optimisers, RNG state, step)
and serving (the EMA generator and its ``ModelConfig``).

What consumers download (registered models) is a *weights file* instead: an ``.npz`` of plain
numeric arrays plus a JSON header, read with ``allow_pickle=False``. ``torch.save`` files are
zip archives around a pickle; even a restricted unpickler is more than a consumer should need.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gan.models import ModelConfig, build_generator

FORMAT = 1


def save_state(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (plus the format number) atomically: temporary file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def save(path: str | os.PathLike, model: ModelConfig, ema: nn.Module, *,
         generator: nn.Module | None = None, discriminator: nn.Module | None = None,
         train: dict | None = None, step: int = 0) -> None:
    """A serving checkpoint: the EMA generator (and optionally the raw networks)."""
    state = {"model": model.to_dict(), "train": dict(train or {}), "step": int(step),
             "ema": ema.state_dict()}
    if generator is not None:
        state["generator"] = generator.state_dict()
    if discriminator is not None:
        state["discriminator"] = discriminator.state_dict()
    save_state(path, state)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint dict (tensors and plain values only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ganvirt checkpoint of format {FORMAT}")
    return state


_HEADER = "__header__.json"


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor], header: dict) -> None:
    """A pickle-free weights file: one array per state-dict entry and a JSON ``header``."""
    path = Path(path)
    arrays = {f"w.{k}": v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).numpy()
              for k, v in state.items()}
    arrays[_HEADER] = np.frombuffer(json.dumps({"format": FORMAT, **header}).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict, header)`` of a weights file (``allow_pickle=False``: arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z[_HEADER]).decode())
            state = {k[2:]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("w.")}
    except Exception as exc:  # corrupt, truncated or foreign files
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ganvirt weights file of format {FORMAT}")
    return state, header


def export_generator(checkpoint_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The serving part of a checkpoint (EMA generator and its config) as a weights file."""
    state = load(checkpoint_path)
    save_weights(out, state["ema"], {"model": state["model"], "step": state.get("step", 0)})
    return Path(out)


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The EMA generator of a checkpoint or of an exported weights file (``.npz``), in eval mode
    on the CPU."""
    if str(path).endswith(".npz"):
        weights, header = load_weights(path)
        model = header["model"]
    else:
        state = load(path)
        weights, model = state["ema"], state["model"]
    G = build_generator(ModelConfig.from_dict(model))
    G.load_state_dict(weights)
    return G.eval().requires_grad_(False)
