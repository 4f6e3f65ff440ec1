"""Run by tests/test_ddp.py under `torchrun --nproc_per_node=2`: a few DCGAN steps with gloo;
each rank writes its final weights for the test to compare."""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from gan.models import ModelConfig
from gan.train import TrainConfig, train, world


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, size = world()
    rng = np.random.default_rng(0)  # the same data on every rank; batches are sharded by rank
    x = torch.from_numpy(rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 3, 64).astype(np.int64))
    reports = []
    cfg = TrainConfig(steps=12, batch_size=16, log_every=4, checkpoint_every=4, grid_every=0)
    res = train(cfg, ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16), x, y,
                report=lambda k, v, s: reports.append(k), checkpoint_path=out / "state.pt")
    torch.save({"G": res.generator.state_dict(), "D": res.discriminator.state_dict(),
                "ema": res.ema.state_dict(), "reports": len(reports), "size": size},
               out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
