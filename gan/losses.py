"""The GAN losses, and the mode-seeking term that keeps a conditional generator from ignoring
its noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "hinge")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, reduce=torch.mean) -> torch.Tensor:
    """``reduce``: mean over each side, or ``torch.sum`` for DP-SGD's per-row gradients."""
    if kind == "hinge":
        return reduce(F.relu(1 - real)) + reduce(F.relu(1 + fake))
    # BCE with logits against 1 and 0, as softplus: the same values, fewer temporaries
    return reduce(F.softplus(-real)) + reduce(F.softplus(fake))


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()  # non-saturating: BCE with logits against 1


def paired(labels: torch.Tensor | None) -> torch.Tensor | None:
    """The fakes' labels for ``mode_seeking``: the second half of the batch repeats the first
    half's, so fake i and fake i + B/2 differ by their noise alone."""
    if labels is None:
        return None
    half = len(labels) // 2
    return torch.cat([labels[:half], labels[:half], labels[2 * half:]])


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The mode-seeking term of MSGAN (Mao et al. 2019), to add to G's loss: 1 / the mean ratio
    of image distance to noise distance over the pairs (i, i + B/2) of ``paired`` labels. Large
    when G maps different noise to the same image (per-class collapse), small once it does not."""
    half = len(fake) // 2
    images = (fake[:half] - fake[half:2 * half]).abs().flatten(1).mean(1)
    noise = (z[:half] - z[half:2 * half]).abs().mean(1)
    return 1.0 / ((images / noise).mean() + eps)


def r1_penalty(out_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder, Geiger & Nowozin 2018): the mean over the batch of ‖∇ₓD(x)‖² at the real
    images ``real`` (which must require grad), kept in the graph for D's update. Weighted by γ/2
    it keeps D flat around the data, so that G is not pushed off the modes D has learnt."""
    grad, = torch.autograd.grad(out_real.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
