"""The seed MLP GAN's training step written out by hand, for the CPU.

On a CPU the seed GAN's matrices are small (128 × 784 at most): its matmuls run near the
machine's peak, and what costs time in an eager step is everything around them — autograd's
graph, a fresh allocation for every intermediate (large ones are fresh pages from the kernel),
separate kernels for bias, activation and their backwards. This step does the same arithmetic
as ``gan.train._step`` on ``MLPGenerator``/``MLPDiscriminator`` (same losses, same order of
updates, D frozen in the G step, one D pass over real and fake): forward and backward as
``addmm``/``mm`` into buffers allocated once, gradients written into preallocated ``.grad``
tensors that the (fused) Adam optimisers then read. ``tests/test_gan.py`` checks that its
losses, gradients and updated weights match autograd's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2  # the seed GAN's leaky ReLU


class _DirectAdam:
    """``opt.step()`` of a fused, single-group Adam without its per-call bookkeeping (about
    0.1 ms a call, a few percent of a seed-GAN step): the same ``torch._fused_adam_`` kernel
    on the optimiser's own state, so checkpoints and resumes see an ordinary ``Adam``. Any
    other optimiser, or a torch without that kernel, just gets ``opt.step()``."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt, self.args, self.kw = opt, None, None
        (group,) = opt.param_groups if len(opt.param_groups) == 1 else (None,)
        self.direct = (group is not None and isinstance(opt, torch.optim.Adam) and hasattr(torch, "_fused_adam_")
                       and group.get("fused") and not group["amsgrad"] and not group["maximize"]
                       and not group["capturable"] and not group["differentiable"]
                       and not group.get("decoupled_weight_decay") and group["weight_decay"] == 0
                       and isinstance(group["lr"], float))

    def step(self) -> None:
        if not self.direct or self.args is None:
            self.opt.step()  # the first call also creates the state
            if self.direct:
                group = self.opt.param_groups[0]
                params = group["params"]
                state = [self.opt.state[p] for p in params]
                self.args = (params, [p.grad for p in params], [s["exp_avg"] for s in state],
                             [s["exp_avg_sq"] for s in state], [], [s["step"] for s in state])
                beta1, beta2 = group["betas"]
                self.kw = dict(amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
            return
        self.kw["lr"] = self.opt.param_groups[0]["lr"]  # a schedule may have moved it
        torch._foreach_add_(self.args[5], 1)
        torch._fused_adam_(*self.args, **self.kw)


class MLPStep:
    """One D update and one G update of an MLP GAN, without autograd."""

    def __init__(self, G: nn.Module, D: nn.Module, batch: int, loss: str):
        if loss not in ("bce", "hinge"):
            raise ValueError(f"loss {loss!r}: expected 'bce' or 'hinge'")
        self.G, self.D, self.B, self.loss = G, D, batch, loss
        self.g = [G.net[0], G.net[2], G.net[4]]
        self.d = [D.net[0], D.net[2], D.net[4]]
        self.pixels = G.cfg.pixels
        for p in (*G.parameters(), *D.parameters()):
            p.grad = torch.zeros_like(p)  # written in place every step, read by the optimisers
        B, H, P = batch, self.g[0].out_features, self.pixels
        e = lambda *shape: torch.empty(*shape, dtype=torch.float32)  # noqa: E731
        # activations after each layer (leaky ReLU in place: its sign is the pre-activation's);
        # G on B rows; D on 2B (real, fake), then on the B fakes; D's input rows hold the data
        self.gh = [e(B, H), e(B, H)]
        self.dx = e(2 * B, P + (D.embed.embedding_dim if D.embed is not None else 0))
        self.dh = [e(2 * B, H), e(2 * B, H), e(2 * B, 1)]
        self.g_out = e(2 * B, 1)
        self.optimisers: dict[int, _DirectAdam] = {}

    # ------------------------------------------------------------------ pieces

    @staticmethod
    def _forward(layers, x, post, last):
        """x → leaky(addmm) → leaky(addmm) → addmm into ``last``; hidden outputs into ``post``."""
        n = len(x)
        for i in range(2):
            h = torch.addmm(layers[i].bias, x, layers[i].weight.t(), out=post[i][:n])
            x = torch.nn.functional.leaky_relu_(h, SLOPE)
        return torch.addmm(layers[2].bias, x, layers[2].weight.t(), out=last)

    @staticmethod
    def _backward(layers, g, inputs, grads: bool, upto_input: bool):
        """Back through three linear layers (leaky ReLUs between) from ``g``, the gradient at
        the last layer's output. ``inputs``: each layer's input. ``grads``: write weight and
        bias gradients; ``upto_input``: return the gradient at the first layer's input."""
        for i in (2, 1, 0):
            layer = layers[i]
            if grads:
                torch.mm(g.t(), inputs[i], out=layer.weight.grad)
                torch.sum(g, 0, out=layer.bias.grad)
            if i == 0 and not upto_input:
                return None
            g = torch.mm(g, layer.weight)
            if i > 0:  # through the leaky ReLU whose output is this layer's input
                g = torch.ops.aten.leaky_relu_backward(g, inputs[i], SLOPE, True)
        return g

    def _adam(self, opt: torch.optim.Optimizer) -> _DirectAdam:
        if id(opt) not in self.optimisers:
            self.optimisers[id(opt)] = _DirectAdam(opt)
        return self.optimisers[id(opt)]

    # ------------------------------------------------------------------ the step

    def step(self, real: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor,
             opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer, all_mean=lambda ts: None) -> torch.Tensor:
        """``real`` (B, pixels) in [0, 1], labels ``y`` (B,) or None, noise ``z`` (B, z_dim).
        Returns (loss_d, loss_g, D(real), D(fake)) like ``gan.train._step``."""
        B, P, G, D = self.B, self.pixels, self.G, self.D
        x = self.dx
        with torch.no_grad():
            # ---- G forward, its images written straight into D's input rows B..2B
            g_in = z if G.embed is None else torch.cat([z, G.embed.weight.index_select(0, y)], 1)
            fake = x[B:, :P]
            torch.sigmoid(self._forward(self.g, g_in, self.gh, None), out=fake)

            # ---- D on real and fake together
            x[:B, :P].copy_(real)
            if D.embed is not None:
                e = D.embed.weight.index_select(0, y)
                x[:B, P:].copy_(e)
                x[B:, P:].copy_(e)
            out = self._forward(self.d, x, self.dh, self.dh[2]).squeeze(1)              # (2B,)
            o_real, o_fake = out[:B], out[B:]
            g_out = self.g_out.squeeze(1)
            if self.loss == "hinge":
                loss_d = F.relu(1 - o_real).mean() + F.relu(1 + o_fake).mean()
                torch.lt(o_real, 1, out=g_out[:B]).neg_()
                torch.gt(o_fake, -1, out=g_out[B:])
                stats_real, stats_fake = torch.sigmoid(o_real).mean(), torch.sigmoid(o_fake).mean()
            else:
                loss_d = F.softplus(-o_real).mean() + F.softplus(o_fake).mean()
                torch.sigmoid(out, out=g_out)
                stats_real, stats_fake = g_out[:B].mean(), g_out[B:].mean()
                g_out[:B].sub_(1)
            g_out.div_(B)
            grad_in = self._backward(self.d, self.g_out, [x, self.dh[0], self.dh[1]], grads=True,
                                     upto_input=D.embed is not None)
            if D.embed is not None:
                D.embed.weight.grad.zero_().index_add_(0, torch.cat([y, y]), grad_in[:, P:])
            all_mean(p.grad for p in D.parameters())
            self._adam(opt_d).step()

            # ---- G step through the updated, frozen D
            xf = x[B:]
            o = self._forward(self.d, xf, self.dh, self.dh[2][:B]).squeeze(1)           # (B,)
            if self.loss == "hinge":
                loss_g = -o.mean()
                g_o = torch.full_like(o, -1.0 / B)
            else:
                loss_g = F.softplus(-o).mean()
                g_o = torch.sigmoid(o).sub_(1).div_(B)
            g_x = self._backward(self.d, g_o[:, None], [xf, self.dh[0][:B], self.dh[1][:B]],
                                 grads=False, upto_input=True)[:, :P]
            g_a3 = torch.ops.aten.sigmoid_backward(g_x, fake)
            g_in_grad = self._backward(self.g, g_a3, [g_in, self.gh[0], self.gh[1]], grads=True,
                                       upto_input=G.embed is not None)
            if G.embed is not None:
                G.embed.weight.grad.zero_().index_add_(0, y, g_in_grad[:, z.shape[1]:])
            all_mean(p.grad for p in G.parameters())
            self._adam(opt_g).step()
            return torch.stack([loss_d, loss_g, stats_real, stats_fake])
