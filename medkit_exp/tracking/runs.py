"""MLflow runs: where they are stored, how a training opens one, and the handle hooks receive."""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Used only when these are unset: MLflow's defaults (7 retries with exponential backoff, 120 s
# timeout) would stall a training for minutes when the server is away, while the spool makes
# retries unnecessary.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI a run uses, made explicit.

    ``tracking_uri`` if given; else MLflow 3's own resolution, ``mlflow.get_tracking_uri()``:
    ``mlflow.set_tracking_uri()``'s value, else the ``MLFLOW_TRACKING_URI`` environment variable,
    else ``./mlruns`` (``file:``) when that folder already holds file-store runs, else
    ``sqlite:///mlflow.db`` in the current working directory (as an absolute path).
    """
    if tracking_uri:
        return str(tracking_uri)
    import mlflow

    return mlflow.get_tracking_uri()


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def configure_http_env(tracking_uri: str, max_retries: int | None = None, timeout: int | None = None) -> None:
    """Short HTTP retries and timeout for a remote tracking URI, unless the user set them.

    MLflow reads these environment variables at each request, so they apply to the process.
    """
    if not is_remote(tracking_uri):
        return
    values = dict(HTTP_ENV_DEFAULTS)
    if max_retries is not None:
        values["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    if timeout is not None:
        values["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    for name, value in values.items():
        os.environ.setdefault(name, value)


class RunHandle(str):
    """An MLflow run id (it *is* the id string) that also knows its tracking URI.

    Hooks get one: ``handle.client`` is an ``MlflowClient`` for the right store, and
    ``with handle.activate():`` makes it the active run of MLflow's fluent API, for the
    ``mlflow.<flavor>.log_model`` functions.
    """

    tracking_uri: str
    session: Any  # the callback's session of the run (maybe in a worker process), or None

    def __new__(cls, run_id: str, tracking_uri: str, session: Any = None) -> RunHandle:
        handle = super().__new__(cls, run_id)
        handle.tracking_uri = tracking_uri
        handle.session = session
        return handle

    @property
    def run_id(self) -> str:
        return str(self)

    @property
    def remote(self) -> bool:
        """True when the run's MLflow work happens in a tracking worker process."""
        return bool(getattr(self.session, "remote", False))

    def run_task(self, function: Any, **kwargs: Any) -> None:
        """Call ``function(run=<this run>, **kwargs)`` where the run's MLflow work is done: in the
        tracking worker, in order with the run's operations (returns at once), else here.
        ``function`` is a module-level function (the worker imports it by its module and name; a
        ``"module:function"`` string is still accepted). The keyword arguments must be JSON data.
        A failure is logged, not raised."""
        if self.session is not None:
            self.session.run_task(function, kwargs)
            return
        from medkit_exp.tracking.session import call_task

        call_task(function, self, kwargs)

    def log_artifacts(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder's files: queued with the run's operations when the run has a
        session (spooled if MLflow is away), else at once."""
        if self.session is not None:
            self.session.submit({"op": "artifact", "local_path": str(local_path), "artifact_path": artifact_path})
        elif Path(local_path).is_dir():
            self.client.log_artifacts(self.run_id, str(local_path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    @contextlib.contextmanager
    def activate(self) -> Iterator[Any]:
        """The run as MLflow's active (fluent) run, and the tracking URI as the fluent one.

        Both are restored on exit. Leaving the block ends the fluent run; the callback sets
        the final status afterwards.
        """
        import mlflow
        from mlflow.tracking._tracking_service import utils as tracking_utils

        previous_uri = tracking_utils._tracking_uri  # None when never set
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri changes it too
        mlflow.set_tracking_uri(self.tracking_uri)
        active = mlflow.active_run()
        try:
            if active is not None and active.info.run_id == str(self):
                yield active
                return
            with mlflow.start_run(run_id=str(self), nested=active is not None) as run:
                yield run
        finally:
            mlflow.set_tracking_uri(previous_uri)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env


def logged_max_steps(client: Any, run_id: str) -> dict[str, int]:
    """The last step of every metric a run has (a resumed run skips steps up to these)."""
    run = client.get_run(run_id)
    return {
        key: max(metric.step for metric in history)
        for key in run.data.metrics
        if (history := client.get_metric_history(run_id, key))
    }


def start_system_metrics(run_id: str, tracking_uri: str, resume: bool) -> Any | None:
    """MLflow's system metrics monitor (CPU, memory, GPU: ``system/*``) for the run, if available."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri, resume_logging=resume)
        monitor.start_step = getattr(monitor, "_logging_step", 0)
        monitor.start()
        return monitor
    except Exception as error:  # noqa: BLE001 - optional: psutil missing, no GPU library...
        logger.warning("MLflow system metrics are not logged: %s", error)
        return None


def stop_system_metrics(monitor: Any) -> None:
    """Stop the monitor. A run shorter than one sampling interval (the monitor publishes after
    each interval and drops what it collected when stopped) still gets one sample, taken now."""
    monitor.finish()
    try:
        if getattr(monitor, "_logging_step", None) == getattr(monitor, "start_step", None):
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
    except Exception as error:  # noqa: BLE001 - optional metrics never fail a run
        logger.warning("MLflow system metrics: the final sample was not logged: %s", error)


def checkpoint_kinds(value: bool | str | Sequence[str] | None) -> list[str]:
    """``log_checkpoints`` as a list: True is both, False/None is none, a string is one."""
    if value is None or value is False:
        return []
    if value is True:
        return ["best", "last"]
    kinds = [value] if isinstance(value, str) else list(value)
    unknown = [kind for kind in kinds if kind not in ("best", "last")]
    if unknown:
        from medkit_exp.errors import ConfigError

        raise ConfigError("tracking.log_checkpoints", f"must be 'best', 'last' or both, got {unknown}")
    return kinds


def trainer_config_dict(config: Any) -> dict[str, Any]:
    """A TrainerConfig (or any config object) as a dict, for params."""
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(getattr(config, "__dict__", {}))


def is_number(value: Any) -> bool:
    """A metric value: a real number (numpy's included) or a one-element tensor/array; not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return hasattr(value, "item") and tuple(getattr(value, "shape", (0,))) in ((), (1,))
