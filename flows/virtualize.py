"""The ``virtualize`` flow: ingest → train → evaluate → register → publish, one way."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from catalog import check_name
from flows.params import VirtualizeParams, default_model, name_from_source
from flows.publication import publish_dataset, task_runner
from tasks import locks
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.register import register
from tasks.train import train_gan


def _run_name() -> str:
    p = flow_run.parameters.get("p") or {}
    p = p if isinstance(p, dict) else p.model_dump()
    seed = (p.get("train") or {}).get("seed", 0)
    name = p.get("name") or name_from_source(p.get("source") or "digits")
    return f"{name} · seed {seed}"


@flow(name="virtualize", log_prints=True, flow_run_name=_run_name, task_runner=task_runner())
def virtualize(p: VirtualizeParams = VirtualizeParams()) -> dict:
    """Turn a real source into a published synthetic dataset and a champion generator.

    Returns a summary: metrics, registered model version, dataset folder. A failed quality gate
    fails the run (nothing published, champion unchanged).
    """
    name = check_name(p.dataset_name())
    gate = p.gate
    evaluation = p.evaluation.config()
    print(f"model {p.train.model}: " + (default_model(p.source)[1] if p.train.model == default_model(p.source)[0]
                                         else "asked for by name"))
    snapshot = ingest(p.source, p.holdout, min_classes=2 if p.train.conditional else 0, options=p.image_options())
    checkpoint = train_gan(snapshot, name, p.train.config(), p.train.model, p.train.conditional,
                           p.train.device, p.train.width, evaluation, p.train.nproc, p.epsilon_budget)
    report = evaluate(checkpoint, snapshot, evaluation, gate)
    with locks.held(f"name:{name}", log=print):  # champion move and publication: one step per dataset
        version = register(checkpoint, report, name, gate)
        folder = publish_dataset(name, p.publication.n, p.publication.seed, expected_version=version.version,
                                 fmt=p.publication.format, virtual=p.publication.virtual)
    return {"name": name, "metrics": report.metrics, "model": version.model,
            "version": version.version, "alias": "champion", "run_id": version.run_id,
            "dataset": folder}
