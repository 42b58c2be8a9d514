"""What a run's tracking session offers the callback and the hooks, wherever it runs.

Two implementations: :class:`medkit_exp.tracking.session.RunSession` (in the training process)
and :class:`medkit_exp.tracking.worker.WorkerSession` (in a tracking worker process). Both turn
each call into a message of :mod:`medkit_exp.tracking.messages` handled by a
:class:`~medkit_exp.tracking.tracker.RunTracker`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from medkit_exp.tracking.messages import Operation
from medkit_exp.tracking.tasks import TaskFunction


@runtime_checkable
class TrackingSession(Protocol):
    remote: bool  # True when the MLflow work happens in a worker process
    tracking_uri: str | None

    @property
    def run_id(self) -> str | None: ...

    @property
    def online(self) -> bool: ...

    def open(self) -> dict[str, Any]: ...

    def describe(self) -> None: ...

    def submit(self, op: Operation) -> None: ...

    def wake(self) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def state(self) -> dict[str, Any]: ...

    def run_task(self, function: TaskFunction, kwargs: Mapping[str, Any]) -> None: ...

    def stop_monitor(self) -> None: ...

    def close(self, timeout: float | None = None) -> dict[str, Any]: ...
