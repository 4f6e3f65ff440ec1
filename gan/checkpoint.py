"""Checkpoints are data, not code: plain dicts of tensors and numbers, loaded with
``weights_only=True``. One format serves both resuming (networks, optimisers, RNG state, step)
and serving (the EMA generator and its ``ModelConfig``)."""

from __future__ import annotations

import os
from pathlib import Path

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


def load_generator(path: str | os.PathLike) -> nn.Module:
    """The EMA generator stored in a checkpoint, in eval mode on the CPU."""
    state = load(path)
    G = build_generator(ModelConfig(**state["model"]))
    G.load_state_dict(state["ema"])
    return G.eval().requires_grad_(False)
