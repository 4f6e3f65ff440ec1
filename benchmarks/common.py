"""What every benchmark shares: the figure format, the machine's description, the JSON file."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def figure(name: str, value: float, unit: str, baseline: float | None = None,
           target: float | None = None, higher_is_better: bool = False) -> dict:
    """One figure; with a baseline, ``ratio`` = value / baseline; with a target, ``target`` and
    ``meets_target`` (value ≤ target, or ≥ with ``higher_is_better``)."""
    out = {"name": name, "value": round(float(value), 4), "unit": unit}
    if baseline is not None:
        out |= {"baseline": round(float(baseline), 4), "ratio": round(float(value) / float(baseline), 3)}
    if target is not None:
        out |= {"target": target, "meets_target": bool(value >= target if higher_is_better else value <= target)}
    return out


def machine(device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write(name: str, figures: list[dict], about: dict) -> Path:
    """``benchmarks/results/<name>.json``; also printed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": about, "figures": figures}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(body, indent=2) + "\n")
    print(json.dumps(body, indent=2))
    return path
