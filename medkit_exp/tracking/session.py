"""A run's tracking session as the callback and the hooks use it (see
:class:`~medkit_exp.tracking.session_protocol.TrackingSession`).

:class:`MessageSession` turns each call into a message of :mod:`medkit_exp.tracking.messages`
(written here once, for every session); a subclass only says where messages go:
:class:`RunSession` hands them to a :class:`~medkit_exp.tracking.tracker.RunTracker` in this
process, :class:`~medkit_exp.tracking.worker.WorkerSession` pipes them to a tracking worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medkit_exp.tracking.messages import (
    Close, Describe, Flush, Open, Operation, RunTask, SessionRequest, State, StopMonitor, Wake,
)
from medkit_exp.tracking.tasks import TaskFunction, check_task
from medkit_exp.tracking.tracker import RunTracker


class MessageSession:
    """The session's calls as messages; ``_tell`` (no answer awaited) and ``_ask`` deliver them."""

    remote = False

    def __init__(self, request: Mapping[str, Any]):
        self.request = request
        self.tracking_uri: str | None = None
        self._state: dict[str, Any] = {"run_id": None, "online": False}

    def _tell(self, message: SessionRequest) -> None:
        raise NotImplementedError

    def _ask(self, message: SessionRequest, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def open(self) -> dict[str, Any]:
        opened = self._ask(self._open_message())
        self.tracking_uri = opened["tracking_uri"]
        self._state = {"run_id": opened["run_id"], "online": opened["online"]}
        return opened

    def _open_message(self) -> Open:
        return Open(self.request)

    @property
    def run_id(self) -> str | None:
        if self._state["run_id"] is None:
            self.state()  # a run created late (the server was away at the start)
        return self._state["run_id"]

    @property
    def online(self) -> bool:
        return bool(self._state["online"])

    def state(self) -> dict[str, Any]:
        result = self._ask(State(), timeout=60)
        if result is not None:
            self._state = result
        return self._state

    def describe(self) -> None:
        self._tell(Describe())

    def submit(self, op: Operation) -> None:
        """Queue an operation."""
        self._tell(op)

    def wake(self) -> None:
        self._tell(Wake())

    def run_task(self, function: TaskFunction, kwargs: Mapping[str, Any]) -> None:
        self._tell(RunTask(check_task(function), dict(kwargs)))

    def stop_monitor(self) -> None:
        self._tell(StopMonitor())

    def flush(self, timeout: float | None = None) -> bool:
        return bool(self._ask(Flush(timeout), timeout=None if timeout is None else timeout + 60))

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        result = self._ask(Close(timeout), timeout=None if timeout is None else timeout + 60)
        if result is None:
            result = {"run_id": self._state["run_id"], "pending": 0, "spool_dir": None}
        self._state["run_id"] = result["run_id"]
        return result


class RunSession(MessageSession):
    """The session in this process: messages handled at once by a :class:`RunTracker`."""

    def __init__(self, request: Mapping[str, Any]):
        super().__init__(request)
        self.tracker = RunTracker(request, session=self)

    def _tell(self, message: SessionRequest) -> None:
        self.tracker.handle(message)

    def _ask(self, message: SessionRequest, timeout: float | None = None) -> Any:
        return self.tracker.handle(message)

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id  # the sender's, current (a run created late included)

    @property
    def online(self) -> bool:
        return self.tracker.online
