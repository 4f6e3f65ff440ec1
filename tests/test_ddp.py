"""gan.train under torchrun: 2 CPU processes with gloo end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import REPO


def test_two_process_ddp_on_cpu(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2",
                          str(REPO / "tests" / "ddp_worker.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["size"] == r1["size"] == 2
    for net in ("G", "D", "ema"):
        for key, value in r0[net].items():
            assert torch.equal(value, r1[net][key]), (net, key)
    assert r0["reports"] > 0 and r1["reports"] == 0  # rank 0 alone reports
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # rank 0 alone checkpoints
    assert state["step"] == 12 and len(state["rng"]) == 2
    # the two ranks trained on different shards: their RNG states differ
    assert not torch.equal(state["rng"][0], state["rng"][1])
