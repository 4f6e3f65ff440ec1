"""Multi-process training through ``torchrun``: what a flow run uses to train on several GPUs (or
CPU processes) of one node.

``launch(spec, nproc)`` starts ``python -m torch.distributed.run --standalone
--nproc_per_node=N -m gan.launch SPEC`` and waits. Every rank trains on its shard of each batch
(``gan.train`` under torch.distributed); rank 0 alone writes what the caller reads back from the
spec's folder: ``reports.jsonl`` (the ``report`` calls), ``grid-<step>.npy`` (sample grids),
the resumable state at ``checkpoint_path``, the serving checkpoint at ``out`` and
``result.json``. The spec is JSON; nothing here knows Prefect or MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from gan import checkpoint
from gan.evaluate import make_probe, real_split
from gan.features import SmallCNN
from gan.models import ModelConfig
from gan.train import Diverged, TrainConfig, train, world


def write_spec(folder: Path, *, data: str, train_cfg: TrainConfig, model: ModelConfig, device: str,
               out: str, checkpoint_path: str, extractor: dict | None = None) -> Path:
    """``extractor``: {"weights", "channels", "outputs", "feature_dim", "stages"} for the quality probe."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("grid-*.npy"), folder / "reports.jsonl", folder / "result.json"]:
        stale.unlink(missing_ok=True)
    spec = {"data": data, "train": train_cfg.to_dict(), "model": model.to_dict(), "device": device,
            "out": out, "checkpoint_path": checkpoint_path, "extractor": extractor}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def launch(spec: Path, nproc: int, log: Callable[[str], None] = print) -> dict:
    """Run the spec on ``nproc`` processes; returns ``result.json``. A diverged run raises
    ``Diverged``; any other failure raises RuntimeError with the workers' last output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "gan.launch", str(spec)]
    log("launching: " + " ".join(cmd))
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-40:]
            log(line.rstrip())
    result_file = spec.parent / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "diverged" in result:
        raise Diverged(result["diverged"]["step"], result["diverged"]["what"])
    if proc.returncode != 0 or "steps" not in result:
        raise RuntimeError(f"torchrun with {nproc} processes failed (exit {proc.returncode}):\n" + "\n".join(tail[-15:]))
    return result


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec_path).parent
    cuda = spec["device"] == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, _ = world()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    cfg, model = TrainConfig(**spec["train"]), ModelConfig(**spec["model"])
    xt, yt, _, _ = real_split(_load_arrays(Path(spec["data"])))
    probe = None
    if spec.get("extractor") and cfg.probe_every:
        e = spec["extractor"]
        extractor = SmallCNN(e["channels"], e["outputs"], e["feature_dim"], e.get("stages", 1))
        extractor.load_state_dict(torch.load(e["weights"], weights_only=True))
        probe = make_probe(extractor.eval().requires_grad_(False), xt, yt, seed=cfg.seed)
    reports = open(folder / "reports.jsonl", "a") if rank == 0 else None

    def report(key: str, value: float, step: int) -> None:
        reports.write(json.dumps({"key": key, "value": value, "step": step}) + "\n")
        reports.flush()

    try:
        result = train(cfg, model, torch.from_numpy(xt),
                       torch.from_numpy(yt) if model.conditional else None, device=device,
                       report=report, report_grid=lambda g, step: np.save(folder / f"grid-{step:07d}.npy", g),
                       probe=probe, checkpoint_path=spec["checkpoint_path"])
    except Diverged as exc:
        if rank == 0:
            (folder / "result.json").write_text(json.dumps({"diverged": {"step": exc.step, "what": exc.what}}))
        raise
    if rank == 0:
        checkpoint.save(spec["out"], model, result.ema.cpu(), train=cfg.to_dict(), step=result.steps)
        (folder / "result.json").write_text(json.dumps({
            "steps": result.steps, "best_step": result.best_step, "best_score": result.best_score,
            "world_size": world()[1]}))
        reports.close()
    dist.destroy_process_group()


def _load_arrays(folder: Path) -> dict:
    """A snapshot folder's arrays: one .npy each (images memory-mapped), or format 1's data.npz."""
    if (folder / "data.npz").exists():
        with np.load(folder / "data.npz", allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    else:
        data = {f.stem: np.load(f, allow_pickle=False, mmap_mode="r" if f.stem == "images" else None)
                for f in folder.glob("*.npy")}
    data.setdefault("labels", None)
    return data


if __name__ == "__main__":
    main(sys.argv[1])

