"""The training loop: a readable, linear loop counted in generator steps.

One discriminator and one generator update per step (non-saturating BCE or hinge losses), and
an EMA copy of the generator that is the one evaluated, registered and served (measured on
``digits``: the raw conditional MLP plateaus near 0.6 TSTR; its EMA copy passes 0.8).
Everything random draws from one ``torch.Generator`` seeded by ``TrainConfig.seed``, and a
checkpoint holds that generator's state with the weights and optimisers, so the same seed and
data give the same weights on CPU, also across an interruption and resume.
"""

from __future__ import annotations

import copy
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gan import checkpoint
from gan.augment import augment, parse
from gan.config import LEGACY
from gan.dcgan import GROUP
from gan.losses import LOSSES, d_loss, g_loss, mode_seeking, paired, r1_penalty, real_spread
from gan.models import ModelConfig, build
from gan.private import Privacy, poisson_rows, private_discriminator, spent
from gan.sampling import preview
from gan.schedule import SCHEDULES, lr_at

LR_SCHEDULES = SCHEDULES
R1_EVERY = 4  # steps between R1 penalties, each weighted by 4 (lazy, as StyleGAN2; its 16 cost quality: README "Lazier R1")


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128          # images per step
    steps: int = 8_000             # generator updates
    lr: float = 2e-4               # Adam, both networks (the peak, under a schedule)
    lr_schedule: str = "constant"  # "constant" or "cosine" (decays to 0 at the last step)
    beta1: float = 0.5             # Adam beta1 (the usual GAN choice; 0.9 is Adam's default)
    ema_beta: float = 0.999        # 0 disables the EMA generator
    loss: str = "bce"              # "bce" (non-saturating) or "hinge"
    augment: str = ""              # DiffAugment policies for D's inputs, e.g. "translation,cutout"
    seed: int = 0                  # fixes weights, batches and noise
    log_every: int = 100           # steps between loss reports (and divergence checks)
    grid_every: int = 2_000        # steps between sample grids (0: none)
    checkpoint_every: int = 1_000  # steps between resumable checkpoints (0: none)
    probe_every: int = 0           # steps between quality probes (0: none); the best EMA wins
    patience: int = 0              # probes without improvement before stopping early (0: never)
    d_steps: int = 1               # discriminator updates per generator step (DP runs want several)
    mode_seeking: float = 0.0      # weight of MSGAN's mode-seeking term in G's loss (0: off)
    mode_seeking_cap: float = 0.0  # > 0: a fake pair's ratio counts up to this × the real pairs' (0: uncapped)
    r1: float = 0.0                # γ of the R1 penalty on D at real images, every R1_EVERY-th step (0: off)
    dp_epsilon: float = 0.0        # > 0: train D with DP-SGD to spend this ε by the last step
    dp_delta: float = 0.0          # δ of the guarantee (0: 1 / (10 · train images))
    dp_max_grad_norm: float = 1.0  # per-sample gradient clipping bound of DP-SGD

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    generator: nn.Module       # the raw generator at the last step
    discriminator: nn.Module
    ema: nn.Module             # the EMA generator to serve: the best probed one when probing
    steps: int                 # steps actually run (early stop may end sooner)
    losses: dict[str, float]   # last reported value of each loss
    best_step: int | None = None     # step of the best probe (None without probes)
    best_score: float | None = None
    privacy: Privacy | None = None   # what a DP run spent (None without DP)


class Diverged(FloatingPointError):
    """A non-finite loss or weight; ``step`` is where it was seen."""

    def __init__(self, step: int, what: str):
        super().__init__(f"training diverged at step {step}: {what}")
        self.step, self.what = step, what


def validate(cfg: TrainConfig) -> None:
    """Fail early, naming the field, on values that cannot train."""
    for field in ("batch_size", "steps", "log_every", "d_steps"):
        if getattr(cfg, field) <= 0:
            raise ValueError(f"TrainConfig.{field} must be a positive integer, got {getattr(cfg, field)}")
    if not cfg.lr > 0:
        raise ValueError(f"TrainConfig.lr must be positive, got {cfg.lr}")
    for field in ("mode_seeking", "mode_seeking_cap", "r1"):
        if not getattr(cfg, field) >= 0:
            raise ValueError(f"TrainConfig.{field} must be >= 0, got {getattr(cfg, field)}")
    if not 0 <= cfg.ema_beta < 1:
        raise ValueError(f"TrainConfig.ema_beta must be in [0, 1), got {cfg.ema_beta}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose from {list(LOSSES)}")
    parse(cfg.augment)
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose from {list(LR_SCHEDULES)}")
    if cfg.checkpoint_every % cfg.log_every:
        raise ValueError(f"TrainConfig.checkpoint_every ({cfg.checkpoint_every}) must be a multiple of log_every ({cfg.log_every})")
    if cfg.dp_epsilon < 0 or cfg.dp_delta < 0 or cfg.dp_max_grad_norm <= 0:
        raise ValueError(f"TrainConfig: dp_epsilon {cfg.dp_epsilon} and dp_delta {cfg.dp_delta} must be >= 0 and "
                         f"dp_max_grad_norm {cfg.dp_max_grad_norm} > 0")
    for field, why in (("r1", "DP-SGD's per-sample clipping does not cover a gradient penalty"),
                       ("mode_seeking_cap", "the cap is measured on real train images, outside the privacy guarantee"),
                       ("probe_every", "the probe selects on real train images, outside the privacy guarantee")):
        if cfg.dp_epsilon and getattr(cfg, field):
            raise ValueError(f"TrainConfig.{field} must be 0 with dp_epsilon: {why}")


def world() -> tuple[int, int]:
    """(rank, world size) under ``torch.distributed`` (e.g. launched by torchrun), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_mean(tensors) -> None:
    """Average tensors across ranks in place (gradients, BatchNorm statistics, loss sums)."""
    _, size = world()
    if size == 1:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(size)


def _adam(net: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel (one op for all parameters) where this torch has it for the
    device, else the multi-tensor (foreach) one: the per-parameter loop is the slow default."""
    params = list(net.parameters())
    try:
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), foreach=True)


class _Run:
    """The mutable state of one training run: networks, optimisers, RNG, step, best probe.

    Under torch.distributed every rank holds the same networks (same seed, averaged gradients
    and BatchNorm statistics) and draws its own shard of each batch from a rank-seeded RNG.
    """

    def __init__(self, cfg: TrainConfig, model: ModelConfig, device: torch.device, images: torch.Tensor, labels):
        self.rank, self.size = world()
        self.G, self.D = (m.to(device) for m in build(model, seed=cfg.seed))
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_g, self.opt_d = _adam(self.G, cfg, device), _adam(self.D, cfg, device)
        self.augment = parse(cfg.augment)
        # batches and noise are drawn where they are used: no host-to-device copy per step on
        # CUDA (there the stream is not the CPU's, so CPU reproducibility is what is promised)
        self.rng = torch.Generator(device if device.type == "cuda" else "cpu")
        self.rng.manual_seed(cfg.seed + 1 + 1_000_003 * self.rank)
        self.privacy = None
        self.spread_cap = (cfg.mode_seeking_cap * real_spread(images, labels if model.conditional else None, seed=cfg.seed)
                           if cfg.mode_seeking and cfg.mode_seeking_cap else None)  # mode seeking's cap
        if cfg.dp_epsilon:  # D and its optimiser through DP-SGD
            if self.size > 1 or (model.kind == "dcgan" and model.minibatch_std):
                raise ValueError("DP training runs in one process (nproc 1), with ModelConfig.minibatch_std off "
                                 "(it mixes images: per-image clipping would not bound one image's influence)")
            self.D, self.opt_d, self.privacy = private_discriminator(
                self.D, self.opt_d, cfg.dp_epsilon, cfg.dp_delta, cfg.dp_max_grad_norm, cfg.batch_size,
                cfg.steps * cfg.d_steps, len(images), self.rng)  # the accountant counts D's updates
        elif device.type == "cuda":  # cuDNN's faster convolution layout (a no-op for the MLP)
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.step = self.probes_since_best = 0
        self.best: tuple[float, int, dict] | None = None   # (score, step, EMA state)

    def state(self, cfg: TrainConfig, model: ModelConfig) -> dict:
        best = {} if self.best is None else {"best_score": self.best[0], "best_step": self.best[1],
                                             "best_ema": self.best[2]}
        return {"model": model.to_dict(), "train": cfg.to_dict(), "step": self.step,
                "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "ema": self.ema.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": self._rng_states(),
                "probes_since_best": self.probes_since_best, **best}

    def restore(self, state: dict, cfg: TrainConfig, model: ModelConfig) -> None:
        # fields added since the checkpoint was written: the model's mean what it was built with
        defaults = {"model": {**ModelConfig().to_dict(), **LEGACY}, "train": TrainConfig().to_dict()}
        for key, ours in (("model", model.to_dict()), ("train", cfg.to_dict())):
            theirs = {k: v for k, v in {**defaults[key], **state[key]}.items() if k != "steps"}
            if theirs != {k: v for k, v in ours.items() if k != "steps"}:
                raise ValueError(f"checkpoint {key} config {state[key]} differs from this run's {ours}")
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"][self.rank] if isinstance(state["rng"], list) else state["rng"])
        self.step = state["step"]
        self.probes_since_best = state.get("probes_since_best", 0)
        if "best_ema" in state:
            self.best = (state["best_score"], state["best_step"], state["best_ema"])

    def _rng_states(self) -> torch.Tensor | list[torch.Tensor]:
        if self.size == 1:
            return self.rng.get_state()
        mine = self.rng.get_state()
        if dist.get_backend() == "nccl":  # NCCL gathers device tensors only
            mine = mine.to(self.rng.device)
        states = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(states, mine)
        return [s.cpu() for s in states]

    def finite(self) -> bool:
        return all(torch.isfinite(p).all() for m in (self.G, self.D, self.ema) for p in m.parameters())


def train(cfg: TrainConfig, model: ModelConfig, images: torch.Tensor,
          labels: torch.Tensor | None = None, *, device: torch.device | str = "cpu",
          report: Callable[[str, float, int], None] = lambda key, value, step: None,
          report_grid: Callable[[np.ndarray, int], None] = lambda picture, step: None,
          probe: Callable[[nn.Module], float] | None = None,
          checkpoint_path: str | os.PathLike | None = None) -> TrainResult:
    """Train a GAN on ``images`` (uint8, (N, C, H, W)) and optional ``labels`` ((N,) int64).

    ``report(key, value, step)`` receives ``loss_d``, ``loss_g``, ``d_real``, ``d_fake`` every
    ``log_every`` steps, ``images_seen`` and, every ``probe_every`` steps and at the last,
    ``probe_score`` (``probe(ema)``, lower is better; the best EMA is kept and returned). ``report_grid`` gets
    a uint8 grid of EMA samples every ``grid_every`` steps. With ``checkpoint_path``, the run
    resumes from that file when it exists, else writes it at step 0, then every
    ``checkpoint_every`` steps; a
    non-finite loss or weight raises ``Diverged`` and leaves the last good checkpoint in place.
    """
    validate(cfg)
    device = torch.device(device)
    if model.conditional and labels is None:
        raise ValueError("a conditional model needs labels")
    run = _Run(cfg, model, device, images, labels)
    if cfg.batch_size % run.size:
        raise ValueError(f"TrainConfig.batch_size {cfg.batch_size} must divide by the {run.size} ranks")
    if run.rank != 0:  # rank 0 alone logs, draws grids and writes checkpoints
        report, report_grid = (lambda *a: None), (lambda *a: None)
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        run.restore(checkpoint.load(checkpoint_path), cfg, model)
    elif checkpoint_path is not None:
        _save(run, cfg, model, checkpoint_path)  # step 0: a run always has a good checkpoint
    batch = cfg.batch_size // run.size  # each rank's shard of a step's batch
    return _loop(run, cfg, model, images, labels, device, batch, report, report_grid, probe, checkpoint_path)


def _loop(run: _Run, cfg: TrainConfig, model: ModelConfig, images, labels, device, batch: int,
          report, report_grid, probe, checkpoint_path) -> TrainResult:
    """``train``'s loop, from its current step to the last."""
    x_all = images.to(device)                                   # uint8 (N, C, H, W), on device
    y_all = labels.to(device) if model.conditional else None    # (N,)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    sums = torch.zeros(4, device=device)  # running loss sums: no host sync inside the loop
    losses: dict[str, float] = {}
    while run.step < cfg.steps:
        run.step += 1
        _set_lr(run, cfg)
        with autocast:
            sums += _step(run, cfg, batch, model, x_all, y_all, device)
        update_ema(run.ema, run.G, cfg.ema_beta, run.step)
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            losses = _log(run, cfg, sums, report)
        if probe is not None and cfg.probe_every and (run.step % cfg.probe_every == 0 or run.step == cfg.steps):
            if _probe(run, cfg, probe, report):
                break  # early stop: no improvement for `patience` probes
        if (cfg.grid_every and run.step % cfg.grid_every == 0) or run.step == cfg.steps:
            report_grid(preview(run.ema, device=device), run.step)
        if checkpoint_path is not None and cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0:
            _save(run, cfg, model, checkpoint_path)
    best_step = best_score = None
    if run.best is not None:
        best_score, best_step, best_state = run.best
        run.ema.load_state_dict(best_state)
    privacy = run.privacy
    if privacy is not None and run.step != cfg.steps:  # stopped early: spent less
        steps = run.step * cfg.d_steps
        privacy = Privacy(spent(privacy.noise_multiplier, privacy.sample_rate, steps, privacy.delta),
                          privacy.delta, privacy.noise_multiplier, privacy.sample_rate, steps, privacy.max_grad_norm)
    return TrainResult(run.G, run.D, run.ema, run.step, losses, best_step, best_score, privacy)


def _set_lr(run: _Run, cfg: TrainConfig) -> None:
    """Both optimisers at this step's rate (a function of the step alone: resumes stay exact)."""
    if cfg.lr_schedule != "constant":
        lr = lr_at(cfg.lr, cfg.lr_schedule, run.step - 1, cfg.steps)
        run.opt_d.param_groups[0]["lr"] = run.opt_g.param_groups[0]["lr"] = lr


def _batch(run: _Run, batch: int, model: ModelConfig, x_all, y_all, device):
    """A step's real images (B, C, H, W) in [0, 1], their labels (B,) or None, the noise and the
    fakes' labels: the real ones, or under DP a Poisson-sampled real batch and uniform labels."""
    if run.privacy is not None:
        idx = poisson_rows(len(x_all), run.privacy.sample_rate, run.rng).to(device)
    else:
        idx = torch.randint(len(x_all), (batch,), generator=run.rng, device=run.rng.device).to(device)
    real = x_all.index_select(0, idx).float().div_(255.0)         # (B, C, H, W) in [0, 1]
    y = y_all.index_select(0, idx) if y_all is not None else None  # (B,)
    z = torch.randn(batch, model.z_dim, generator=run.rng, device=run.rng.device).to(device)
    y_fake = y
    if run.privacy is not None and y_all is not None:
        y_fake = torch.randint(model.num_classes, (batch,), generator=run.rng, device=run.rng.device).to(device)
    return real, y, z, y_fake


def _step(run: _Run, cfg: TrainConfig, batch: int, model: ModelConfig, x_all, y_all, device) -> torch.Tensor:
    """``cfg.d_steps`` D updates and one G update; returns (loss_d, loss_g, D(real), D(fake)) of
    the last D update and the G update, as a device tensor. The G update reuses the last D
    update's fakes and labels (``paired`` ones with ``mode_seeking``)."""
    for _ in range(cfg.d_steps - 1):
        _d_update(run, cfg.loss, *_batch(run, batch, model, x_all, y_all, device))
    real, y, z, y_fake = _batch(run, batch, model, x_all, y_all, device)
    if cfg.mode_seeking:
        y_fake = paired(y_fake)
    r1 = cfg.r1 * R1_EVERY if run.step % R1_EVERY == 0 else 0.0
    loss_d, out_real, out_fake, fake = _d_update(run, cfg.loss, real, y, z, y_fake, r1)

    # generator: make the updated D call the same fakes real; D frozen, so no D weight gradients
    run.D.requires_grad_(False)
    if run.privacy is not None:
        run.D.disable_hooks()  # no per-sample gradients of D in the G step
    loss_g = g_loss(cfg.loss, run.D(augment(fake, run.augment, run.rng), y_fake).float())  # reported
    run.opt_g.zero_grad(set_to_none=True)
    (loss_g + cfg.mode_seeking * mode_seeking(fake.float(), z, run.spread_cap) if cfg.mode_seeking else loss_g).backward()
    run.D.requires_grad_(True)
    if run.privacy is not None:
        run.D.enable_hooks()
    _all_mean(p.grad for p in run.G.parameters())
    run.opt_g.step()
    _all_mean(b for b in run.G.buffers() if b.is_floating_point())  # BatchNorm running stats
    with torch.no_grad():
        if run.privacy is not None:  # per image, as without DP
            loss_d = loss_d / max(1, len(real))
        return torch.stack([loss_d, loss_g, torch.sigmoid(out_real).mean(), torch.sigmoid(out_fake).mean()])


def _d_update(run: _Run, loss: str, real, y, z, y_fake, r1: float = 0.0):
    """One D update on a real batch and fakes of ``z``, plus ``r1``/2 times the R1 penalty when
    ``r1``; returns (loss_d, D(real), D(fake), fakes)."""
    fake = run.G(z, y_fake)
    real.requires_grad_(bool(r1))  # R1 differentiates D(real) with respect to the real images
    # one pass over real and fake together (a 32-px CPU step: 187 -> 158 ms), unless D's minibatch
    # std would then put reals and fakes in one group
    seen = augment(torch.cat([real, fake.detach()]), run.augment, run.rng)  # DiffAugment, if any
    labels = torch.cat([y, y_fake]) if y is not None else None
    if getattr(run.D, "batch_statistics", False) and len(real) % GROUP:
        out = torch.cat([run.D(seen[:len(real)], y), run.D(seen[len(real):], y_fake)]).float()
    else:
        out = run.D(seen, labels).float()
    out_real, out_fake = out[:len(real)], out[len(real):]
    loss_d = d_loss(loss, out_real, out_fake, torch.sum if run.privacy is not None else torch.mean)
    run.opt_d.zero_grad(set_to_none=True)
    (loss_d + r1 / 2 * r1_penalty(out_real, real) if r1 else loss_d).backward()
    _all_mean(p.grad for p in run.D.parameters())
    run.opt_d.step()
    return loss_d.detach(), out_real.detach(), out_fake.detach(), fake


def _log(run: _Run, cfg: TrainConfig, sums: torch.Tensor, report) -> dict[str, float]:
    seen = cfg.log_every if run.step % cfg.log_every == 0 else run.step % cfg.log_every
    _all_mean([sums])
    values = (sums / seen).tolist()  # the one host sync, every log_every steps
    sums.zero_()
    losses = dict(zip(("loss_d", "loss_g", "d_real", "d_fake"), values))
    if not all(np.isfinite(v) for v in values):
        raise Diverged(run.step, f"non-finite losses {losses}")
    for key, value in losses.items():
        report(key, value, run.step)
    report("images_seen", float(run.step * cfg.batch_size), run.step)
    return losses


def _probe(run: _Run, cfg: TrainConfig, probe, report) -> bool:
    """Score the EMA generator; keep it if best. True when patience has run out."""
    score = float(probe(run.ema))
    report("probe_score", score, run.step)
    if run.best is None or score < run.best[0]:
        run.best = (score, run.step, copy.deepcopy(run.ema.state_dict()))
        run.probes_since_best = 0
    else:
        run.probes_since_best += 1
    return bool(cfg.patience) and run.probes_since_best >= cfg.patience


def _save(run: _Run, cfg: TrainConfig, model: ModelConfig, path) -> None:
    if not run.finite():
        raise Diverged(run.step, "non-finite weights")
    state = run.state(cfg, model)  # every rank joins the RNG gather
    if run.rank == 0:
        checkpoint.save_state(path, state)


@torch.no_grad()
def update_ema(ema: nn.Module, G: nn.Module, beta: float, step: int) -> None:
    """ema ← beta·ema + (1-beta)·G, with beta warmed up so early steps are not frozen at init."""
    beta = min(beta, (1 + step) / (10 + step))
    for e, g in zip(ema.parameters(), G.parameters()):
        e.lerp_(g, 1.0 - beta)
    for e, g in zip(ema.buffers(), G.buffers()):  # BatchNorm statistics: copied, not averaged
        e.copy_(g)
