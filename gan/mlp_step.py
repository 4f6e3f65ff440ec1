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

Two cores: the batch is cut into two shards whose gradients are summed before each Adam
update, and with two or more CPU threads the second shard runs in a helper process (``python
-m gan.mlp_helper``, one per concurrent run, reused by later runs), each process
single-threaded, the parameters, the shard's rows and its gradients passed through a shared
memory file. Measured on the 2-core development machine, splitting each small kernel over two
OpenMP threads sometimes ran no faster than one thread, while two single-threaded processes
always ran at twice one; two Python threads reached 1.4× (the interpreter lock serialises the
many small kernel calls). Without a helper (one thread, or no shared memory) the second shard
runs here after the first: the arithmetic is the same either way, so results do not depend
on the thread count.
"""

from __future__ import annotations

import json
import os
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from gan.mlp_helper import Helper, Layout, shared_file

SLOPE = 0.2  # the seed GAN's leaky ReLU
HELPER = True  # the second shard in a helper process where there are two threads (False: here)


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


def _forward(layers, x, post, last):
    """x → leaky(addmm) → leaky(addmm) → addmm into ``last``; hidden outputs into ``post``."""
    n = len(x)
    for i in range(2):
        h = torch.addmm(layers[i].bias, x, layers[i].weight.t(), out=post[i][:n])
        x = torch.nn.functional.leaky_relu_(h, SLOPE)
    return torch.addmm(layers[2].bias, x, layers[2].weight.t(), out=last)


def _backward(layers, g, inputs, grads, upto_input: bool):
    """Back through three linear layers (leaky ReLUs between) from ``g``, the gradient at the
    last layer's output. ``inputs``: each layer's input. ``grads``: per layer, the (weight,
    bias) tensors its gradients are written into, or None; ``upto_input``: return the
    gradient at the first layer's input."""
    for i in (2, 1, 0):
        layer = layers[i]
        if grads is not None:
            torch.mm(g.t(), inputs[i], out=grads[i][0])
            torch.sum(g, 0, out=grads[i][1])
        if i == 0 and not upto_input:
            return None
        g = torch.mm(g, layer.weight)
        if i > 0:  # through the leaky ReLU whose output is this layer's input
            g = torch.ops.aten.leaky_relu_backward(g, inputs[i], SLOPE, True)
    return g


class _Shard:
    """One shard's rows of a step: its own buffers, and the tensors its gradients go to (one
    per parameter, in the order of ``G.parameters()`` then ``D.parameters()``). Losses and D
    statistics are sums over its rows; gradients are those of the whole batch's mean loss."""

    def __init__(self, G: nn.Module, D: nn.Module, rows: int, grads: list[torch.Tensor]):
        H, P = G.net[0].out_features, G.cfg.pixels
        e = lambda *shape: torch.empty(*shape, dtype=torch.float32)  # noqa: E731
        self.G, self.D, self.n, self.pixels = G, D, rows, P
        self.g, self.d = [G.net[0], G.net[2], G.net[4]], [D.net[0], D.net[2], D.net[4]]
        # activations after each layer (leaky ReLU in place: its sign is the pre-activation's);
        # G on n rows; D on 2n (real, fake), then on the n fakes; D's input rows hold the data
        self.gh = [e(rows, H), e(rows, H)]
        self.dx = e(2 * rows, P + (D.embed.embedding_dim if D.embed is not None else 0))
        self.dh = [e(2 * rows, H), e(2 * rows, H), e(2 * rows, 1)]
        self.g_out = e(2 * rows, 1)
        self.grad = dict(zip((*G.parameters(), *D.parameters()), grads))
        self.d_grads = [(self.grad[m.weight], self.grad[m.bias]) for m in self.d]
        self.g_grads = [(self.grad[m.weight], self.grad[m.bias]) for m in self.g]

    def d_part(self, real, y, z, B: int, loss: str) -> None:
        """G forward on this shard's noise; D on its real and fake rows; D's gradients."""
        P, G, D, x, n = self.pixels, self.G, self.D, self.dx, self.n
        self.y, self.z = y, z
        self.g_in = z if G.embed is None else torch.cat([z, G.embed.weight.index_select(0, y)], 1)
        self.fake = x[n:, :P]  # G's images written straight into D's input rows n..2n
        torch.sigmoid(_forward(self.g, self.g_in, self.gh, None), out=self.fake)
        _rows_into(x[:n, :P], real)
        if D.embed is not None:
            emb = D.embed.weight.index_select(0, y)
            x[:n, P:].copy_(emb)
            x[n:, P:].copy_(emb)
        out = _forward(self.d, x, self.dh, self.dh[2]).squeeze(1)                      # (2n,)
        o_real, o_fake = out[:n], out[n:]
        g_out = self.g_out.squeeze(1)
        if loss == "hinge":
            self.loss_d = F.relu(1 - o_real).sum() + F.relu(1 + o_fake).sum()
            torch.lt(o_real, 1, out=g_out[:n]).neg_()
            torch.gt(o_fake, -1, out=g_out[n:])
            self.stats = torch.sigmoid(o_real).sum(), torch.sigmoid(o_fake).sum()
        else:
            self.loss_d = F.softplus(-o_real).sum() + F.softplus(o_fake).sum()
            torch.sigmoid(out, out=g_out)
            self.stats = g_out[:n].sum(), g_out[n:].sum()
            g_out[:n].sub_(1)
        g_out.div_(B)
        grad_in = _backward(self.d, self.g_out, [x, self.dh[0], self.dh[1]], self.d_grads,
                            upto_input=D.embed is not None)
        if D.embed is not None:
            self.grad[D.embed.weight].zero_().index_add_(0, torch.cat([y, y]), grad_in[:, P:])

    def g_part(self, B: int, loss: str) -> None:
        """G's gradients from these rows, through the updated, frozen D."""
        P, G, n = self.pixels, self.G, self.n
        xf = self.dx[n:]
        o = _forward(self.d, xf, self.dh, self.dh[2][:n]).squeeze(1)                    # (n,)
        if loss == "hinge":
            self.loss_g = -o.sum()
            g_o = torch.full_like(o, -1.0 / B)
        else:
            self.loss_g = F.softplus(-o).sum()
            g_o = torch.sigmoid(o).sub_(1).div_(B)
        g_x = _backward(self.d, g_o[:, None], [xf, self.dh[0][:n], self.dh[1][:n]], None, upto_input=True)[:, :P]
        g_a3 = torch.ops.aten.sigmoid_backward(g_x, self.fake)
        g_in_grad = _backward(self.g, g_a3, [self.g_in, self.gh[0], self.gh[1]], self.g_grads,
                              upto_input=G.embed is not None)
        if G.embed is not None:
            self.grad[G.embed.weight].zero_().index_add_(0, self.y, g_in_grad[:, self.z.shape[1]:])


def _rows_into(dst: torch.Tensor, rows: torch.Tensor) -> None:
    """Real rows into a float buffer: uint8 pixels scaled to [0, 1] there, as
    ``rows.float() / 255`` would (the same float32 values), or floats copied."""
    dst.copy_(rows)
    if rows.dtype == torch.uint8:
        dst.div_(255.0)


@contextmanager
def threads(n: int):
    """torch's intra-op thread count set to ``n`` for the block."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class MLPStep:
    """One D update and one G update of an MLP GAN, without autograd, in two shards."""

    def __init__(self, G: nn.Module, D: nn.Module, batch: int, loss: str, helper: bool | None = None):
        if loss not in ("bce", "hinge"):
            raise ValueError(f"loss {loss!r}: expected 'bce' or 'hinge'")
        self.G, self.D, self.B, self.loss = G, D, batch, loss
        self.params = [*G.parameters(), *D.parameters()]
        self.n_g = len(list(G.parameters()))
        for p in self.params:
            p.grad = torch.zeros_like(p)  # written in place every step, read by the optimisers
        rows = [batch // 2, batch - batch // 2] if batch >= 2 else [batch]
        self.cut = rows[0]
        self.shards = [_Shard(G, D, rows[0], [p.grad for p in self.params])]
        self.optimisers: dict[int, _DirectAdam] = {}
        self.helper: Helper | None = None
        self.grads: list[torch.Tensor] | None = None  # the second shard's gradients
        self._finalizer = None
        if len(rows) == 1:
            return
        if helper if helper is not None else HELPER and torch.get_num_threads() >= 2:
            try:
                self._start_helper(rows[1])
            except (OSError, RuntimeError) as exc:  # no helper: the same arithmetic here, slower
                warnings.warn(f"MLP step: no helper process ({exc}); both shards run in this process", stacklevel=2)
        if self.helper is None:  # the second shard here, after the first
            self.shards.append(_Shard(G, D, rows[1], [torch.zeros_like(p) for p in self.params]))
            self.grads = [self.shards[1].grad[p] for p in self.params]

    def _start_helper(self, rows: int) -> None:
        layout = Layout(self.G.cfg, rows, [tuple(p.shape) for p in self.params])
        path, flat = shared_file(layout.total)
        try:
            self.values, self.grads, self.real, self.z, self.y, self.out = layout.views(flat)
            self._publish(0, len(self.params))
            helper = Helper.take()
            setup = {"path": path, "model": asdict(self.G.cfg), "rows": rows, "batch": self.B, "loss": self.loss}
            helper.send(b"s" + json.dumps(setup).encode() + b"\n")
            helper.wait()
        finally:
            os.unlink(path)  # both processes have it mapped
        self.helper = helper
        self._finalizer = weakref.finalize(self, Helper.give_back, helper)

    def close(self) -> None:
        """Hand the helper process back for the next run (also done when this step is freed)."""
        if self._finalizer is not None:
            self._finalizer()

    def _publish(self, lo: int, hi: int) -> None:
        """Parameters lo..hi (G's, then D's) into the shared file for the helper."""
        with torch.no_grad():
            for p, v in zip(self.params[lo:hi], self.values[lo:hi]):
                v.copy_(p)

    def _adam(self, opt: torch.optim.Optimizer) -> _DirectAdam:
        if id(opt) not in self.optimisers:
            self.optimisers[id(opt)] = _DirectAdam(opt)
        return self.optimisers[id(opt)]

    def _sum_grads(self, lo: int, hi: int) -> None:
        """The second shard's gradients of parameters lo..hi added to the first's (in .grad)."""
        if self.grads is not None:
            for p, g in zip(self.params[lo:hi], self.grads[lo:hi]):
                p.grad.add_(g)

    def step(self, real: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor,
             opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer, all_mean=lambda ts: None) -> torch.Tensor:
        """``real`` (B, pixels): floats in [0, 1] or uint8 pixels; labels ``y`` (B,) or None,
        noise ``z`` (B, z_dim). Returns (loss_d, loss_g, D(real), D(fake)) like ``gan.train._step``."""
        B, loss, c, first, n_g, n = self.B, self.loss, self.cut, self.shards[0], self.n_g, len(self.params)
        part = lambda t, lo, hi: None if t is None else t[lo:hi]  # noqa: E731
        # every shard single-threaded, here or in the helper: the same arithmetic either way
        with torch.no_grad(), threads(1):
            if self.helper is not None:
                _rows_into(self.real, real[c:])
                self.z.copy_(z[c:])
                if y is not None:
                    self.y.copy_(y[c:])
                self.helper.send(b"d")
            elif len(self.shards) > 1:
                self.shards[1].d_part(real[c:], part(y, c, B), z[c:], B, loss)
            first.d_part(real[:c], part(y, 0, c), z[:c], B, loss)
            if self.helper is not None:
                self.helper.wait()
            self._sum_grads(n_g, n)
            all_mean(p.grad for p in self.params[n_g:])
            self._adam(opt_d).step()
            if self.helper is not None:
                self._publish(n_g, n)
                self.helper.send(b"g")
            elif len(self.shards) > 1:
                self.shards[1].g_part(B, loss)
            first.g_part(B, loss)
            if self.helper is not None:
                self.helper.wait()
            self._sum_grads(0, n_g)
            all_mean(p.grad for p in self.params[:n_g])
            self._adam(opt_g).step()
            if self.helper is not None:
                self._publish(0, n_g)
            stats = torch.stack([first.loss_d, first.loss_g, *first.stats])
            if self.helper is not None:
                stats = stats + self.out
            elif len(self.shards) > 1:
                second = self.shards[1]
                stats = stats + torch.stack([second.loss_d, second.loss_g, *second.stats])
            return stats / B
