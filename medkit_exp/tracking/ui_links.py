"""Links into the MLflow UI that open the model-training view of a run.

MLflow 3.17's UI ignores the experiment tag ``mlflow.experimentKind`` (which the runs' experiments
carry for later versions): it picks between its GenAI and model-training views from the URL's
``workflowType`` query parameter, else the browser's last choice, else GenAI (an empty traces
page). The links printed and documented therefore carry ``?workflowType=machine_learning``.

>>> experiment_url("http://127.0.0.1:5000/", "3")
'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
>>> run_url("http://mlflow:5000", "3", "ab12")
'http://mlflow:5000/#/experiments/3/runs/ab12?workflowType=machine_learning'
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

TRAINING_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in the model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def experiment_of_run(tracking_uri: str, run_id: str) -> str | None:
    """The run's experiment id; None when the store cannot be read now (the link then names none)."""
    from medkit_exp.tracking.uris import configure_http_env

    configure_http_env(tracking_uri)  # a server that went away answers within seconds, not minutes
    try:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    except Exception as error:  # noqa: BLE001 - a link is never worth a failed run
        logger.warning("No MLflow UI link for run %s: its experiment could not be read (%s)", run_id, error)
        return None


def summary_lines(tracking_uri: str | None, run_id: str) -> list[str]:
    """The run summary's MLflow lines: the run and its store (credentials redacted), and how to
    open it in the model-training view (a local store: ``mlflow ui`` first)."""
    from medkit_exp.redaction import redact_url
    from medkit_exp.tracking.uris import is_remote, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    shown = redact_url(uri)
    lines = [f"  MLflow run: {run_id} ({shown})"]
    base = shown if is_remote(uri) else LOCAL_UI
    if not is_remote(uri):
        lines.append(f"  open the MLflow UI: mlflow ui --backend-store-uri {shown}")
    experiment_id = experiment_of_run(uri, run_id)
    if experiment_id is not None:
        lines.append(f"  the run in the UI: {run_url(base, experiment_id, run_id)}")
    elif is_remote(uri):
        lines.append(f"  open the MLflow UI: {shown}")
    return lines
