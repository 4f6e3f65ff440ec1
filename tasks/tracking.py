"""MLflow plumbing shared by the tasks: one experiment per dataset, model names, run handles."""

from __future__ import annotations

import logging

import mlflow
from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError

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
