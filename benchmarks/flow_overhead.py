"""Benchmark: what the orchestration costs around the work, and how fast the CLI starts.

Runs ``ganvirt run`` (the embedded default: digits, no server) in a fresh process on a fresh
``GANVIRT_HOME``, twice (the second run reuses the snapshot and the extractor), and reads each
task run's duration back from the run's own Prefect store. Flow overhead = the process's wall
time minus the time spent in training, evaluation and sampling (the ``train``, ``evaluate`` and
``sample shard`` tasks): interpreter and library imports, Prefect's temporary server, MLflow's
store, registry writes. Also times ``ganvirt --help`` (best of 5).

    .venv/bin/python -m benchmarks.flow_overhead

Writes ``benchmarks/results/flow_overhead.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import figure, machine, write

WORK_TASKS = ("train", "evaluate", "sample shard")
TARGET_OVERHEAD_S = 20.0
TARGET_HELP_S = 1.0
GANVIRT = str(Path(sys.executable).with_name("ganvirt"))


def task_seconds(home: Path) -> dict[str, float]:
    """Seconds per task name (summed over runs of it) of the latest flow run in ``home``."""
    code = r"""
import asyncio, json, sys
from ganvirt import settings
settings.configure_environment()
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort
async def main():
    async with get_client() as c:
        run = (await c.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1))[0]
        out = {}
        for t in await c.read_task_runs():
            if t.flow_run_id == run.id:
                name = t.name.rsplit("-", 1)[0] if t.name[-4:-3] == "-" else t.name
                name = "sample shard" if name.startswith("sample shard") else name
                out[name] = out.get(name, 0.0) + t.total_run_time.total_seconds()
        print(json.dumps(out))
asyncio.run(main())
"""
    env = {**os.environ, "GANVIRT_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_flow(home: Path) -> tuple[float, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME")}
    env["GANVIRT_HOME"] = str(home)
    start = time.perf_counter()
    subprocess.run([GANVIRT, "run"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, task_seconds(home)


def help_seconds() -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([GANVIRT, "--help"], check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    figures = [figure("cli_help_seconds", help_seconds(), "s", target=TARGET_HELP_S)]
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("first_run", "second_run"):
            wall, tasks = run_flow(Path(tmp) / "home")
            work = sum(tasks.get(t, 0.0) for t in WORK_TASKS)
            figures += [figure(f"{label}.wall_seconds", wall, "s"),
                        *(figure(f"{label}.task.{k}_seconds", v, "s") for k, v in sorted(tasks.items())),
                        figure(f"{label}.flow_overhead_seconds", wall - work, "s (wall - train - evaluate - sampling)",
                               target=TARGET_OVERHEAD_S)]
            print(f"{label}: wall {wall:.1f} s, work {work:.1f} s, overhead {wall - work:.1f} s", flush=True)
    write("flow_overhead", figures, machine())


if __name__ == "__main__":
    main()
