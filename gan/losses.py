"""The GAN losses, and the mode-seeking term that keeps a conditional generator from ignoring
its noise."""

from __future__ import annotations

import math

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


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, cap: float | None = None, eps: float = 1e-5) -> torch.Tensor:
    """The mode-seeking term of MSGAN (Mao et al. 2019), to add to G's loss: 1 / the mean ratio
    of image distance to noise distance over the pairs (i, i + B/2) of ``paired`` labels. Large
    when G maps different noise to the same image (per-class collapse), small once it does not.
    With ``cap``, each pair's ratio counts up to ``cap`` (as DSGAN's τ, Yang et al. 2019): a pair
    as far apart as that is left alone, so that G is not pushed to more ink or contrast than
    the data has (``real_spread`` gives the real images' ratio)."""
    half = len(fake) // 2
    images = (fake[:half] - fake[half:2 * half]).abs().flatten(1).mean(1)
    noise = (z[:half] - z[half:2 * half]).abs().mean(1)
    ratio = images / noise if cap is None else (images / noise).clamp(max=cap)
    return 1.0 / (ratio.mean() + eps)


# E|z_i − z_j| of two independent standard normals: z_i − z_j ~ N(0, 2), so √2 · √(2/π)
NOISE_PAIR_DISTANCE = 2 / math.sqrt(math.pi)


def real_spread(images: torch.Tensor, labels: torch.Tensor | None, pairs: int = 4_096, seed: int = 0) -> float:
    """``mode_seeking``'s ratio for the real data: the mean per-pixel distance |x_i − x_j| (on
    the [0, 1] scale) of ``pairs`` random pairs of real images (uint8 (N, C, H, W)) with the same
    label (any two without labels), over ``NOISE_PAIR_DISTANCE``. Same seed, same value."""
    gen = torch.Generator().manual_seed(seed)
    images = images.cpu()
    i = torch.randint(len(images), (pairs,), generator=gen)
    if labels is None:
        j = torch.randint(len(images), (pairs,), generator=gen)
    else:  # a random image of i's class: classes sorted, a random offset into i's class's run
        labels = labels.cpu()
        order, counts = torch.argsort(labels, stable=True), torch.bincount(labels)
        starts, li = torch.cumsum(counts, 0) - counts, labels[i]
        offset = (torch.rand(pairs, generator=gen, dtype=torch.float64) * counts[li]).long()
        j = order[starts[li] + torch.minimum(offset, counts[li] - 1)]
    distance = (images[i].float() - images[j].float()).abs().flatten(1).mean(1).mean() / 255
    return float(distance) / NOISE_PAIR_DISTANCE


def r1_penalty(out_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder, Geiger & Nowozin 2018): the mean over the batch of ‖∇ₓD(x)‖² at the real
    images ``real`` (which must require grad), kept in the graph for D's update. Weighted by γ/2
    it keeps D flat around the data, so that G is not pushed off the modes D has learnt."""
    grad, = torch.autograd.grad(out_real.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
