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


def summary_lines(uri: str, run_id: str, experiment_id: str | None) -> list[str]:
    """The run summary's MLflow lines: the run and its store (credentials redacted), and how to
    open it in the model-training view (a local store: ``mlflow ui`` first). ``uri`` and
    ``experiment_id`` are the tracker's (None: MLflow was not reached, the link names no run
    page): neither MLflow nor the store is opened here, which would cost the run seconds at its end."""
    from medkit_exp.redaction import redact_url
    from medkit_exp.tracking.uris import is_remote

    shown = redact_url(uri)
    lines = [f"  MLflow run: {run_id} ({shown})"]
    base = shown if is_remote(uri) else LOCAL_UI
    if not is_remote(uri):
        lines.append(f"  open the MLflow UI: mlflow ui --backend-store-uri {shown}")
    if experiment_id is not None:
        lines.append(f"  the run in the UI: {run_url(base, experiment_id, run_id)}")
    elif is_remote(uri):
        lines.append(f"  open the MLflow UI: {shown}")
    return lines
