"""MLflow plumbing shared by the tasks: one experiment per dataset, model names, run handles."""

from __future__ import annotations

import logging
import os

import mlflow
from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from tasks.home import artifact_root, tracking_uri


def experiment_id(name: str) -> str:
    """The experiment of dataset ``name``, created on first use.

    Embedded (SQLite) stores get an explicit artifact location under ``GANVIRT_HOME``; a tracking
    server chooses its own (proxied) location.
    """
    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        location = (artifact_root() / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another run
        return mlflow.get_experiment_by_name(name).experiment_id


def client() -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri())


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run; a plain logger when a task is called as ``.fn``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("ganvirt")


def in_prefect_run() -> bool:
    """True inside a flow or task run (Prefect artifacts need one); False under ``task.fn``."""
    try:
        get_run_context()
    except MissingContextError:
        return False
    return True


def mlflow_ui_url() -> str:
    """The MLflow UI over this tracking store: ``GANVIRT_MLFLOW_UI_URL``, else the tracking
    server's own address, else where ``make mlflow-ui`` serves the embedded store."""
    explicit = os.environ.get("GANVIRT_MLFLOW_UI_URL", "").strip()
    if explicit:
        return explicit.rstrip("/")
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def link_prefect_run() -> None:
    """Tag the active MLflow run with this Prefect flow run (its id, and its UI link when
    Prefect knows a UI URL); nothing outside a flow run."""
    if not in_prefect_run() or not flow_run.id:
        return
    tags = {"ganvirt.prefect_flow_run_id": flow_run.id}
    if flow_run.ui_url:
        tags["ganvirt.prefect_flow_run_url"] = flow_run.ui_url
    mlflow.set_tags(tags)


def link_artifact(name: str, what: str, path: str, text: str) -> None:
    """A link artifact on the Prefect flow run to ``path`` in the MLflow UI (``what`` becomes
    part of its key, e.g. ``digits-mlflow-run``); nothing outside a flow run."""
    if in_prefect_run():
        create_link_artifact(f"{mlflow_ui_url()}/#/{path}", link_text=text, key=f"{name}-{what}",
                             description=f"{text} in the MLflow UI")
