"""Tasks: module-level functions called with a run's handle where its MLflow work is done.

A task (drawing the learning curves, logging a model) is ``function(run=RunHandle, **kwargs)``.
It runs in the training process, or in the tracking worker, in order with the run's
operations: there it travels pickled, that is by its module and name, so it must be a
module-level function (:func:`check_task` says so at the call, in both paths alike).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("medkit_exp.tracking.callback")  # the callback's messages, wherever they run

TaskFunction = Callable[..., None]


def check_task(function: TaskFunction) -> TaskFunction:
    """``function`` if another process can import it (a module-level function), else TypeError."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if isinstance(function, str) or not callable(function) or not module or "." in name or "<" in name:
        raise TypeError(f"an MLflow task must be a module-level function, got {function!r}")
    return function


def task_name(function: TaskFunction) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def call_task(function: TaskFunction, run: Any, kwargs: Mapping[str, Any]) -> None:
    """``function(run=run, **kwargs)``; a failure is logged, not raised."""
    started = time.perf_counter()
    try:
        function(run=run, **kwargs)
    except Exception:  # noqa: BLE001 - the run's data is safe; report and go on
        logger.exception("MLflow task %s failed", task_name(function))
    logger.debug("MLflow task %s took %.2fs", task_name(function), time.perf_counter() - started)
