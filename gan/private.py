"""Differentially private discriminator training (DP-SGD through opacus).

Only the discriminator sees real images, so only it is trained privately; the generator learns
from the private discriminator alone and is post-processing. Each step draws the real batch by
Poisson sampling (every train image joins with probability q = batch / N), clips every row's
gradient to ``max_grad_norm`` (opacus computes per-sample gradients), adds Gaussian noise of
standard deviation ``noise_multiplier · max_grad_norm`` to their sum, and the RDP accountant
composes the steps. The noise multiplier is calibrated so that the last step reaches ε.
The fakes of a step are rows of the same batch, clipped alike: they do not depend on the
private data beyond the already private past, and their labels are drawn uniformly, so the
generator's conditioning does not reveal the class counts.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

ACCOUNTANT = "rdp"


@dataclass(frozen=True)
class Privacy:
    """What a DP run spent, as recorded in MLflow and in the catalog manifest."""
    epsilon: float            # spent over all steps at ``delta`` (the accountant's value)
    delta: float
    noise_multiplier: float   # σ: noise std / max_grad_norm
    sample_rate: float        # q: batch / number of train images
    steps: int
    max_grad_norm: float      # C: the per-sample clipping bound
    accountant: str = ACCOUNTANT

    def to_dict(self) -> dict:
        return asdict(self)


def private_model(model):
    """``model`` (a ``ModelConfig``) as DP trains it: D judges each image alone (no minibatch
    std, which mixes images and would void per-image clipping) with one convolution per stage
    and two stages at 28-32 px (DP-SGD's noise grows with D's parameters, not its signal; a third
    stage triples them). G keeps plain BatchNorm: the DP recipe was measured with it (latent
    modulation costs no privacy, but is not measured under DP)."""
    return replace(model, minibatch_std=False, d_convs=1, latent_modulation=False, min_stages=2)


def default_delta(n: int) -> float:
    """δ = 1 / (10 n): an order of magnitude below 1/n, the usual bound, so that the chance of
    exposing any one record outright stays small."""
    return 1.0 / (10 * n)


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest σ whose ``steps`` Poisson-sampled steps at ``sample_rate`` spend at most
    ``epsilon`` at ``delta`` (opacus's calibration, RDP accountant)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant=ACCOUNTANT))


def spent(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε spent by ``steps`` steps of σ = ``noise`` at ``sample_rate``, at ``delta``."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise, sample_rate, steps)]
    return float(accountant.get_epsilon(delta=delta))


def make_private(D: nn.Module, optimizer: torch.optim.Optimizer, noise: float, max_grad_norm: float,
                 batch: int, generator: torch.Generator) -> tuple[nn.Module, torch.optim.Optimizer]:
    """D with per-sample gradients and its optimiser clipping and noising them (the loss a step
    backpropagates is a sum over rows). The noise draws from ``generator``: a seeded run is
    reproducible (not a secure RNG; opacus's ``secure_mode`` is for deployments that need one)."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    # opacus's per-sample hooks fire on D's first layer, whose input (an image) needs no
    # gradient: torch warns about it at every DP run, and it is expected
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                            "respect to module outputs since no inputs require gradients", category=UserWarning)
    module = GradSampleModule(D, loss_reduction="sum")
    return module, DPOptimizer(optimizer, noise_multiplier=noise, max_grad_norm=max_grad_norm,
                               expected_batch_size=batch, loss_reduction="sum", generator=generator)


def private_discriminator(D: nn.Module, optimizer: torch.optim.Optimizer, epsilon: float, delta: float,
                          max_grad_norm: float, batch: int, steps: int, n: int, generator: torch.Generator
                          ) -> tuple[nn.Module, torch.optim.Optimizer, Privacy]:
    """D and its optimiser through DP-SGD for ``steps`` Poisson-sampled updates of expected size
    ``batch`` from ``n`` private rows, σ calibrated to spend ``epsilon`` at ``delta`` (0: the
    default δ) by the last one; returns them with what they will spend."""
    q = min(1.0, batch / n)
    delta = delta or default_delta(n)
    sigma = noise_multiplier(epsilon, delta, q, steps)
    D, optimizer = make_private(D, optimizer, sigma, max_grad_norm, batch, generator)
    return D, optimizer, Privacy(spent(sigma, q, steps, delta), delta, sigma, q, steps, max_grad_norm)


def poisson_rows(n: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of the rows that join this step's batch, each with probability ``sample_rate``."""
    return torch.nonzero(torch.rand(n, generator=generator, device=generator.device) < sample_rate).flatten()
