"""The helper process of ``gan.mlp_step``: it computes the second shard of each seed-MLP step
on the other core (``python -m gan.mlp_helper``), the parameters, that shard's rows and its
gradients in a shared-memory file, one byte per command over a pipe."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time

import torch


class Layout:
    """Where each tensor lives in the shared file (float32 elements): G and D parameters,
    the second shard's gradients, rows (real, noise, labels as floats) and 4 sums out."""

    def __init__(self, model_cfg, rows: int, sizes: list[tuple[int, ...]]):
        shapes = [*sizes, *sizes, (rows, model_cfg.pixels), (rows, model_cfg.z_dim), (rows,), (4,)]
        self.shapes, self.offsets, total = shapes, [], 0
        for shape in shapes:
            self.offsets.append(total)
            total += int(torch.Size(shape).numel())
        self.total, self.count = total, len(sizes)

    def views(self, flat: torch.Tensor):
        """(parameters, gradients, real, z, y, out) as views of ``flat``."""
        vs = [flat[o:o + int(torch.Size(s).numel())].view(s) for o, s in zip(self.offsets, self.shapes)]
        k = self.count
        return vs[:k], vs[k:2 * k], vs[2 * k], vs[2 * k + 1], vs[2 * k + 2], vs[2 * k + 3]


def shared_file(elements: int) -> tuple[str, torch.Tensor]:
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="ganvirt-mlp-", dir=folder)
    try:
        os.ftruncate(fd, elements * 4)
    finally:
        os.close(fd)
    return path, torch.from_file(path, shared=True, size=elements, dtype=torch.float32)


class Helper:
    """The parent's end of one helper process: one byte per command, ``k`` or an error back."""

    _idle: list["Helper"] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        # single-threaded, and finding this very package whatever the caller's sys.path
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "gan.mlp_helper"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, bufsize=0)
        self.pending = 0  # commands sent and not yet answered

    @classmethod
    def take(cls) -> "Helper":
        with cls._lock:
            while cls._idle:
                helper = cls._idle.pop()
                if helper.proc.poll() is None:
                    return helper
        return cls()

    @classmethod
    def give_back(cls, helper: "Helper") -> None:
        """Back to the idle list, unless it is gone or a step was left half done (an exception
        or an interrupt between a command and its answer): then it is stopped."""
        if helper.pending:
            helper.proc.kill()
            helper.proc.wait()
            return
        if helper.proc.poll() is None:
            with cls._lock:
                cls._idle.append(helper)

    def send(self, command: bytes) -> None:
        try:
            os.write(self.proc.stdin.fileno(), command)
            self.pending += 1
        except BrokenPipeError:
            raise RuntimeError(f"the MLP step's helper process failed: it exited with code {self.proc.wait()}") from None

    def wait(self) -> None:
        fd = self.proc.stdout.fileno()
        reply = _read1(fd, spin_s=0.05)
        self.pending -= 1
        if reply != b"k":
            detail = b""
            while reply == b"e" and not detail.endswith(b"\n") and (more := _read1(fd, 0.0)):
                detail += more
            self.proc.kill()
            raise RuntimeError(f"the MLP step's helper process failed: {detail.decode(errors='replace').strip() or 'it exited'}")


def _read1(fd: int, spin_s: float) -> bytes:
    """One byte from ``fd`` (b"" at its end): polled for up to ``spin_s`` seconds, as a reply
    comes within a millisecond and waking a sleeping process costs about a tenth of that,
    then waited for. The pipe, not shared memory, carries the signal, so the data written
    into the shared file before it is visible to the reader on any CPU."""
    os.set_blocking(fd, False)
    deadline = time.perf_counter() + spin_s
    try:
        while True:
            try:
                return os.read(fd, 1)
            except BlockingIOError:
                if time.perf_counter() > deadline:
                    select.select([fd], [], [])
    finally:
        os.set_blocking(fd, True)


def _serve() -> None:
    """The helper process: set up a shard over a shared file, then run its halves on request."""
    from gan.mlp_step import _Shard
    from gan.models import ModelConfig, build

    torch.set_num_threads(1)
    shard = None
    while command := _read1(0, spin_s=0.005):
        try:
            with torch.no_grad():
                if command == b"s":
                    line = b""
                    while not line.endswith(b"\n"):
                        line += os.read(0, 65536)
                    setup = json.loads(line)
                    model = ModelConfig(**setup["model"])
                    G, D = build(model, seed=0)
                    params = [*G.parameters(), *D.parameters()]
                    layout = Layout(model, setup["rows"], [tuple(p.shape) for p in params])
                    flat = torch.from_file(setup["path"], shared=True, size=layout.total, dtype=torch.float32)
                    values, grads, real, z, y, out = layout.views(flat)
                    for p, v in zip(params, values):
                        p.data = v
                    shard, B, loss = _Shard(G, D, setup["rows"], grads), setup["batch"], setup["loss"]
                elif command == b"d":
                    shard.d_part(real, y.long() if G.embed is not None else None, z, B, loss)
                    out[0], out[2], out[3] = shard.loss_d, *shard.stats
                elif command == b"g":
                    shard.g_part(B, loss)
                    out[1] = shard.loss_g
            os.write(1, b"k")
        except Exception as exc:  # told to the parent, which raises it
            os.write(1, b"e" + f"{type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")


if __name__ == "__main__":
    _serve()
