"""The handle of a tracked run that hooks and tasks receive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.tracking.messages import LogArtifacts
from medkit_exp.tracking.tasks import TaskFunction, call_task, check_task

if TYPE_CHECKING:
    from medkit_exp.tracking.session_protocol import TrackingSession


class RunHandle:
    """An MLflow run id with its tracking URI, and the session doing the run's MLflow work.

    ``handle.client`` is an ``MlflowClient`` for the right store; ``with handle.activate():``
    makes it the active run of MLflow's fluent API, for the ``mlflow.<flavor>.log_model``
    functions; ``handle.run_task(function, ...)`` and ``handle.log_artifacts(path)`` go where
    the run's MLflow work is done. ``str(handle)`` is the run id. ``model_context`` (plain data,
    see :mod:`medkit_exp.tracking.model_link`) names the run's model, its source and the
    metrics to link to it: :meth:`model_name`, :meth:`model_tags`, :meth:`link_model_metrics`.
    """

    def __init__(self, run_id: str, tracking_uri: str, session: TrackingSession | None = None,
                 model_context: Mapping[str, Any] | None = None):
        self.run_id = str(run_id)
        self.tracking_uri = tracking_uri
        self.session = session
        self.model_context: dict[str, Any] = dict(model_context or {})

    def model_name(self, kind: str = "model") -> str:
        """The name of the run's model: ``<experiment>-<kind>``."""
        from medkit_exp.tracking.model_link import model_name

        return model_name(self.model_context, kind)

    def model_tags(self) -> dict[str, str]:
        """The logged model's source tags: the training's command, not the process that logs it."""
        return dict(self.model_context.get("source_tags") or {})

    def link_model_metrics(self, model_id: str) -> int:
        """Log the best evaluation's metrics for the logged model ``model_id``; their count."""
        from medkit_exp.tracking.model_link import link_model_metrics

        return link_model_metrics(self.client, self.run_id, model_id, self.model_context)

    def __str__(self) -> str:
        return self.run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r}, {self.tracking_uri!r})"

    @property
    def remote(self) -> bool:
        """True when the run's MLflow work happens in a tracking worker process."""
        return self.session is not None and self.session.remote

    def run_task(self, function: TaskFunction, **kwargs: Any) -> None:
        """Call ``function(run=<this run>, **kwargs)`` where the run's MLflow work is done: in the
        tracking worker, in order with the run's operations (returns at once), else here.
        ``function`` is a module-level function (the worker imports it by its module and name);
        the keyword arguments plain data.
        A failure is logged, not raised."""
        check_task(function)
        if self.session is not None:
            self.session.run_task(function, kwargs)
        else:
            call_task(function, self, kwargs)

    def log_artifacts(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder's files: queued with the run's operations when the run has a
        session (spooled if MLflow is away), else at once."""
        if self.session is not None:
            self.session.submit(LogArtifacts(str(local_path), artifact_path))
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

        from medkit_exp.tracking.uris import fluent_tracking_uri

        with fluent_tracking_uri(self.tracking_uri):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                yield active
                return
            with mlflow.start_run(run_id=self.run_id, nested=active is not None) as run:
                yield run
