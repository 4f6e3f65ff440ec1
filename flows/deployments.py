"""The deployments that `ganvirt up` serves (and `infra/prefect.yaml` defines for work pools):
``virtualize/scheduled`` on a cron schedule, and ``republish/on-demand``.

    python -m flows.deployments [--cron "0 2 * * *"] [--source digits]
"""

from __future__ import annotations

import argparse

from prefect import serve

from flows.params import VirtualizeParams
from flows.republish import RepublishParams, republish
from flows.virtualize import virtualize

DEFAULT_CRON = "0 2 * * *"  # nightly at 02:00


def form_defaults(source: str) -> dict:
    """The Run form's starting values: every field's default except the training section's,
    which names the model only, so that a user who picks another model in the form gets that
    model's own defaults (steps, batch size, learning rate, schedule, probe), not the MLP's."""
    p = VirtualizeParams(source=source).model_dump(mode="json")
    return p | {"train": {"model": p["train"]["model"]}}


def deployments(cron: str = DEFAULT_CRON, source: str = "digits"):
    """The RunnerDeployments: parameters render as typed forms in the Prefect UI."""
    return [
        virtualize.to_deployment(
            name="scheduled", cron=cron or None, tags=["ganvirt"],
            parameters={"p": form_defaults(source)},
            description="Ingest, train, evaluate, register and publish; the gates decide what becomes champion."),
        republish.to_deployment(
            name="on-demand", tags=["ganvirt"],
            parameters={"p": RepublishParams().model_dump(mode="json")},
            description="Publish a new dataset version from the current champion, without training."),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the ganvirt deployments until interrupted.")
    ap.add_argument("--cron", default=DEFAULT_CRON, help=f"virtualize schedule (default {DEFAULT_CRON!r}; '' for none)")
    ap.add_argument("--source", default="digits", help="default source of scheduled runs")
    args = ap.parse_args(argv)
    serve(*deployments(args.cron, args.source))


if __name__ == "__main__":
    main()
