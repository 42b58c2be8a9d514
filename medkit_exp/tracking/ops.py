"""Tracking operations executed against MLflow, through its public client API.

:func:`apply_op` executes one :data:`~medkit_exp.tracking.messages.Operation` (the one place that
does); :func:`send_op` drops, with a warning, what the server rejects for good;
:func:`merge_metric_ops` batches consecutive metric operations; :class:`MetricDeduper` makes a
replay idempotent. Also the run's creation (:func:`create_run`, from a spool's spec) and what a
resumed run already has (:func:`logged_max_steps`).

An artifact with ``link=True`` (files written once: checkpoints) is hard-linked into a local
artifact store (:mod:`medkit_exp.tracking.files`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medkit_exp.tracking.files import link_or_copy, local_artifact_root
from medkit_exp.tracking.messages import (
    LogArtifacts, LogInputs, LogMetrics, LogParams, MetricPoint, Operation, SetStatus, SetTags,
)
from medkit_exp.tracking.params import MAX_PARAMS_PER_BATCH, chunks

logger = logging.getLogger(__name__)

#: The experiment tag the MLflow 3 UI reads to open an experiment in its "Model training" view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
# MLflow error codes that no retry can fix: the operation is dropped (with a warning).
PERMANENT_ERROR_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
     "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)


def is_permanent_error(error: BaseException) -> bool:
    """True for errors the server would repeat (bad value, unknown run); others may be transient."""
    return getattr(error, "error_code", None) in PERMANENT_ERROR_CODES


def redact_op(op: Operation) -> Operation:
    """The operation without secrets (credentials in URLs, secret-named keys' values...): every
    path to MLflow and to the spool goes through it. Metrics, artifacts and statuses hold none."""
    from medkit_exp.redaction import redact_data

    match op:
        case LogParams(params=params):
            return replace(op, params=redact_data(dict(params)))
        case SetTags(tags=tags):
            return replace(op, tags=redact_data(dict(tags)))
        case LogInputs(datasets=datasets):
            return replace(op, datasets=tuple(redact_data(list(datasets))))
    return op


def merge_metric_ops(ops: Iterable[Operation]) -> list[Operation]:
    """Consecutive metric operations merged into batches MLflow accepts (order kept)."""
    batches: list[Operation] = []
    points: list[MetricPoint] = []
    for op in ops:
        if isinstance(op, LogMetrics):
            points.extend(op.points)
            continue
        batches.extend(LogMetrics(tuple(part)) for part in chunks(points, MAX_METRICS_PER_BATCH))
        points = []
        batches.append(op)
    batches.extend(LogMetrics(tuple(part)) for part in chunks(points, MAX_METRICS_PER_BATCH))
    return batches


class MetricDeduper:
    """Remembers the (key, step) points a run has, to send each point once.

    ``skip_through`` (key -> step) drops points at or before a step: a run resumed from a
    checkpoint redoes the steps after it, which the run may already hold.
    """

    def __init__(self) -> None:
        self.known: dict[str, set[int]] = {}
        self.skip_through: dict[str, int] = {}

    def load_from_run(self, client: Any, run_id: str, keys: Iterable[str]) -> None:
        """Fetch the steps the run already has for ``keys`` (once per key)."""
        for key in keys:
            if key not in self.known:
                self.known[key] = {metric.step for metric in client.get_metric_history(run_id, key)}

    def filter(self, points: list[MetricPoint]) -> list[MetricPoint]:
        kept = []
        for point in points:
            key, step = point[0], point[3]
            if step <= self.skip_through.get(key, -1) or step in self.known.get(key, ()):
                continue
            kept.append(point)
        return kept

    def mark_sent(self, points: list[MetricPoint]) -> None:
        for point in points:
            self.known.setdefault(point[0], set()).add(point[3])


def apply_op(client: Any, run_id: str, op: Operation, deduper: MetricDeduper | None = None) -> None:
    """Execute one operation for ``run_id`` (MLflow's public client API); its exceptions propagate.

    The one place an operation meets MLflow: the sender (in the training process or the worker)
    and the spool's replay both come here.
    """
    match op:
        case LogMetrics(points=points):
            _log_metrics(client, run_id, list(points), deduper)
        case LogParams(params=params):
            _log_params(client, run_id, params)
        case SetTags(tags=tags):
            from mlflow.entities import RunTag

            for part in chunks([RunTag(key, str(value)) for key, value in tags.items()], MAX_PARAMS_PER_BATCH):
                client.log_batch(run_id, tags=part)
        case LogInputs(datasets=datasets):
            from medkit_exp.tracking.datasets import dataset_input

            client.log_inputs(run_id, datasets=[dataset_input(d["entity"], d["context"]) for d in datasets])
        case LogArtifacts(local_path=local_path, artifact_path=artifact_path, link=link):
            _log_artifact(client, run_id, local_path, artifact_path, link=link)
        case SetStatus(status="RUNNING"):
            client.update_run(run_id, status="RUNNING")
        case SetStatus(status=status, end_time=end_time):
            client.set_terminated(run_id, status=status, end_time=end_time)
        case _:
            raise TypeError(f"not a tracking operation: {op!r}")


def send_op(client: Any, run_id: str, op: Operation, deduper: MetricDeduper | None = None) -> None:
    """:func:`apply_op`, dropping with a warning an operation the server rejects for good.

    Other errors (connection refused, timeouts, server errors) propagate: the caller keeps the
    operation for later.
    """
    try:
        apply_op(client, run_id, op, deduper)
    except Exception as error:
        if not is_permanent_error(error):
            raise
        logger.warning("MLflow rejected a %r operation for run %s, dropped: %s", op.kind, run_id, error)


def _log_metrics(client: Any, run_id: str, points: list[MetricPoint], deduper: MetricDeduper | None) -> None:
    from mlflow.entities import Metric

    if deduper is not None:
        points = deduper.filter(points)
    if not points:
        return
    client.log_batch(run_id, metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in points])
    if deduper is not None:
        deduper.mark_sent(points)


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """Log the params the run does not have; keep (and warn about) those it has with another value."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    changed = sorted(key for key, value in params.items() if key in existing and existing[key] != str(value))
    if changed:
        logger.warning(
            "MLflow run %s already has other values for params %s: kept (a resumed run keeps its params)",
            run_id, ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else ""),
        )
    missing = [Param(key, str(value)) for key, value in params.items() if key not in existing]
    for part in chunks(missing, MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=part)


def _log_artifact(client: Any, run_id: str, local_path: str, artifact_path: str | None, link: bool = False) -> None:
    path = Path(local_path)
    if not path.exists():
        logger.warning("Artifact %s no longer exists: not logged to MLflow", path)
        return
    local_root = local_artifact_root(client.get_run(run_id).info.artifact_uri) if link else None
    if local_root is not None:
        link_or_copy(path, local_root / (artifact_path or ""))
    elif path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (or restored from deletion) if needed.

    The experiment is marked as one of model training (:data:`EXPERIMENT_KIND_TAG`), so that the
    MLflow UI opens it on its runs rather than on GenAI traces; a kind already set (by the user,
    or by MLflow) is left alone.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException as error:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise error
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    mark_training_experiment(client, experiment)
    return experiment.experiment_id


def mark_training_experiment(client: Any, experiment: Any) -> None:
    """Tag ``experiment`` (an MLflow Experiment) as one of model training, unless it has a kind:
    one made by an older version, outside the project, or by ``mlflow run`` for its run."""
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def create_run(client: Any, spec: dict[str, Any]) -> str:
    """Create the run described by a spool spec (experiment, name, parent, start time); its id."""
    experiment_id = get_or_create_experiment(client, spec["experiment_name"], spec.get("artifact_location"))
    tags = {}
    if spec.get("parent_run_id"):
        tags["mlflow.parentRunId"] = spec["parent_run_id"]
    run = client.create_run(experiment_id, start_time=spec.get("start_time"), tags=tags, run_name=spec.get("run_name"))
    return run.info.run_id


def logged_max_steps(client: Any, run_id: str) -> dict[str, int]:
    """The last step of every metric a run has (a resumed run skips steps up to these)."""
    run = client.get_run(run_id)
    return {
        key: max(metric.step for metric in history)
        for key in run.data.metrics
        if (history := client.get_metric_history(run_id, key))
    }


__all__ = [
    "MAX_METRICS_PER_BATCH", "MetricDeduper", "apply_op", "create_run", "get_or_create_experiment",
    "is_permanent_error", "logged_max_steps", "mark_training_experiment", "merge_metric_ops", "redact_op", "send_op",
    "EXPERIMENT_KIND_TAG", "TRAINING_KIND",
]
