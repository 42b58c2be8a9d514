"""The handle of a tracked run that hooks and tasks receive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    the run's MLflow work is done. ``str(handle)`` is the run id.
    """

    def __init__(self, run_id: str, tracking_uri: str, session: TrackingSession | None = None):
        self.run_id = str(run_id)
        self.tracking_uri = tracking_uri
        self.session = session

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
