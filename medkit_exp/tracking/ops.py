"""Tracking operations: plain JSON-serializable dicts, sent to MLflow or kept in the spool.

One format for both paths means what could not be sent is replayed exactly as it would have
been sent. The operations::

    {"op": "metrics", "metrics": [[key, value, timestamp_ms, step], ...]}
    {"op": "params", "params": {key: value}}         only absent keys are logged (resume-safe)
    {"op": "tags", "tags": {key: value}}
    {"op": "inputs", "datasets": [{"entity": {...}, "context": "train"}]}
    {"op": "artifact", "local_path": path, "artifact_path": folder or null, "link": true|false}
    {"op": "status", "status": "RUNNING" | "FINISHED" | "FAILED" | "KILLED", "end_time": ms or null}

Every operation is idempotent, metrics included: :class:`MetricDeduper` drops points whose
(key, step) the run already has, so replaying something that did arrive adds nothing. An artifact
with ``"link": true`` (files written once: checkpoints) is hard-linked into a local artifact store.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable

from medkit_exp.tracking.files import link_or_copy, local_artifact_root
from medkit_exp.tracking.params import MAX_PARAMS_PER_BATCH, chunks

logger = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
# MLflow error codes that no retry can fix: the operation is dropped (with a warning).
PERMANENT_ERROR_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
     "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)


def now_ms() -> int:
    return int(time.time() * 1000)


def is_permanent_error(error: BaseException) -> bool:
    """True for errors the server would repeat (bad value, unknown run); others may be transient."""
    return getattr(error, "error_code", None) in PERMANENT_ERROR_CODES


def redact_op(op: dict[str, Any]) -> dict[str, Any]:
    """The operation without secrets (credentials in URLs, secret-named keys' values...): every
    path to MLflow and to the spool goes through it. Metrics, artifacts and statuses hold none."""
    from medkit_exp.redaction import redact_data

    kind = op.get("op")
    if kind in ("params", "tags"):
        return {**op, kind: {key: value for key, value in redact_data(dict(op[kind])).items()}}
    if kind == "inputs":
        return {**op, "datasets": redact_data(op["datasets"])}
    return op


def metric_points(metrics: dict[str, float], step: int, timestamp: int | None = None) -> list[list[Any]]:
    timestamp = now_ms() if timestamp is None else timestamp
    return [[key, float(value), timestamp, int(step)] for key, value in metrics.items()]


def merge_metric_ops(ops: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive metric operations merged into batches MLflow accepts (order kept)."""
    merged: list[dict[str, Any]] = []
    for op in ops:
        if op["op"] == "metrics" and merged and merged[-1]["op"] == "metrics":
            merged[-1] = {"op": "metrics", "metrics": merged[-1]["metrics"] + op["metrics"]}
        else:
            merged.append(op)
    batches: list[dict[str, Any]] = []
    for op in merged:
        if op["op"] == "metrics":
            batches.extend({"op": "metrics", "metrics": part} for part in chunks(op["metrics"], MAX_METRICS_PER_BATCH))
        else:
            batches.append(op)
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

    def filter(self, points: list[list[Any]]) -> list[list[Any]]:
        kept = []
        for point in points:
            key, step = point[0], point[3]
            if step <= self.skip_through.get(key, -1) or step in self.known.get(key, ()):
                continue
            kept.append(point)
        return kept

    def mark_sent(self, points: list[list[Any]]) -> None:
        for point in points:
            self.known.setdefault(point[0], set()).add(point[3])


def apply_op(client: Any, run_id: str, op: dict[str, Any], deduper: MetricDeduper | None = None) -> None:
    """Send one operation for ``run_id``; MLflow's exceptions propagate."""
    kind = op["op"]
    if kind == "metrics":
        _log_metrics(client, run_id, op["metrics"], deduper)
    elif kind == "params":
        _log_params(client, run_id, op["params"])
    elif kind == "tags":
        from mlflow.entities import RunTag

        tags = [RunTag(key, str(value)) for key, value in op["tags"].items()]
        for part in chunks(tags, MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, tags=part)
    elif kind == "inputs":
        from medkit_exp.tracking.datasets import dataset_input

        client.log_inputs(run_id, datasets=[dataset_input(d["entity"], d["context"]) for d in op["datasets"]])
    elif kind == "artifact":
        _log_artifact(client, run_id, op["local_path"], op.get("artifact_path"), link=op.get("link", False))
    elif kind == "status":
        if op["status"] == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status=op["status"], end_time=op.get("end_time"))
    else:
        raise ValueError(f"unknown tracking operation {kind!r}")


def send_op(client: Any, run_id: str, op: dict[str, Any], deduper: MetricDeduper | None = None) -> None:
    """:func:`apply_op`, dropping with a warning an operation the server rejects for good.

    Other errors (connection refused, timeouts, server errors) propagate: the caller keeps the
    operation for later.
    """
    try:
        apply_op(client, run_id, op, deduper)
    except Exception as error:
        if not is_permanent_error(error):
            raise
        logger.warning("MLflow rejected a %r operation for run %s, dropped: %s", op["op"], run_id, error)


def _log_metrics(client: Any, run_id: str, points: list[list[Any]], deduper: MetricDeduper | None) -> None:
    from mlflow.entities import Metric

    if deduper is not None:
        points = deduper.filter(points)
    if not points:
        return
    client.log_batch(run_id, metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in points])
    if deduper is not None:
        deduper.mark_sent(points)


def _log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
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
    """The id of experiment ``name``, created (or restored from deletion) if needed."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as error:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise error
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def create_run(client: Any, spec: dict[str, Any]) -> str:
    """Create the run described by a spool spec (experiment, name, parent, start time); its id."""
    experiment_id = get_or_create_experiment(client, spec["experiment_name"], spec.get("artifact_location"))
    tags = {}
    if spec.get("parent_run_id"):
        tags["mlflow.parentRunId"] = spec["parent_run_id"]
    run = client.create_run(experiment_id, start_time=spec.get("start_time"), tags=tags, run_name=spec.get("run_name"))
    return run.info.run_id
