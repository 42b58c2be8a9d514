"""One training run's side of MLflow: open the run, describe it, send its operations, close it.

:class:`RunSession` does everything that talks to MLflow for an :class:`MLflowCallback`, from a
request made of plain data (built by ``MLflowCallback._run_request``), so that it can run in the
training process or in a tracking worker process (:mod:`medkit_exp.tracking.worker`), which keeps
MLflow's imports, store and sends out of the training process. Both expose the same methods:

- ``open()``: reattach to the run or create it (replaying what this output folder spooled
  earlier first); ``{"run_id", "online", "tracking_uri"}``. An error MLflow would repeat (a bad
  experiment name or parent run) raises.
- ``describe()``: tags (git, command, host, versions...), params, dataset inputs, the config
  artifact; starts the system metrics monitor.
- ``submit(op)``, ``wake()``, ``flush(timeout)``, ``state()``: the operations of
  :mod:`medkit_exp.tracking.ops`, sent by an :class:`~medkit_exp.tracking.sink.AsyncRunLogger`.
- ``run_task(function, kwargs)``: call ``function(run=RunHandle, **kwargs)`` (drawing a plot,
  logging a model); ``function`` is a module-level function (a ``"module:function"`` string is
  still accepted for callers not yet switched); a failure is logged, never raised.
- ``stop_monitor()``, ``close(timeout)``: ``{"run_id", "pending", "spool_dir"}``.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

from medkit_exp.tracking.ops import MetricDeduper, create_run, is_permanent_error, now_ms, redact_op
from medkit_exp.tracking.runs import (
    RunHandle,
    configure_http_env,
    logged_max_steps,
    resolve_tracking_uri,
    start_system_metrics,
    stop_system_metrics,
)
from medkit_exp.tracking.sink import AsyncRunLogger
from medkit_exp.tracking.store import prepare_store
from medkit_exp.tracking.spool import RunSpool, replay, replay_uri, run_spools

logger = logging.getLogger("medkit_exp.tracking.callback")  # the callback's messages, wherever they run


class RunSession:
    """See the module docstring."""

    def __init__(self, request: dict[str, Any]):
        self.request = request
        self.tracking_uri: str | None = None
        self.logger: AsyncRunLogger | None = None
        self._monitor: Any = None

    # ------------------------------------------------------------------ start
    def open(self) -> dict[str, Any]:
        from mlflow import MlflowClient

        request = self.request
        uri = self.tracking_uri = resolve_tracking_uri(request["tracking_uri"])
        configure_http_env(uri, request["http_max_retries"], request["http_timeout"])
        prepare_store(uri)  # created and migrated once, under a lock: other processes open it too
        client = MlflowClient(uri)
        output_dir = Path(request["output_dir"])
        self._replay_leftovers(output_dir, uri)
        spool = RunSpool.for_run(output_dir, request["local_id"])
        spec = spool.read_spec() or {
            "local_id": request["local_id"], "tracking_uri": uri, "experiment_name": request["experiment_name"],
            "run_name": request["run_name"], "parent_run_id": request["parent_run_id"],
            "artifact_location": request["artifact_location"], "start_time": now_ms(), "run_id": None,
        }
        run_id = request["restored_run_id"] or spec.get("run_id") or request["launcher_run_id"]
        online, run_id, deduper = self._open_run(client, spool, spec, run_id)
        self.logger = AsyncRunLogger(
            client, run_id, spool, online=online, flush_interval=request["flush_interval"],
            retry_interval=request["retry_interval"], deduper=deduper,
        )
        return {"run_id": run_id, "online": online, "tracking_uri": uri}

    @staticmethod
    def _replay_leftovers(output_dir: Path, uri: str) -> None:
        """Send what earlier trainings in this folder spooled (each to the URI it recorded)."""
        from mlflow import MlflowClient

        for spool in run_spools(output_dir):
            spec = spool.read_spec() or {}
            if not spool.has_pending() and spec.get("run_id"):
                continue
            try:
                replay(spool, MlflowClient(replay_uri(spec, uri)))
            except Exception as error:  # noqa: BLE001 - still unreachable: the spool stays
                logger.warning("Spooled MLflow data in %s not sent yet: %s", spool.directory, str(error)[:200])

    def _open_run(self, client: Any, spool: RunSpool, spec: dict[str, Any], run_id: str | None) -> tuple[bool, str | None, MetricDeduper]:
        """Reattach to ``run_id`` (or create the run), send what this run spooled earlier, and
        note the steps the run has (a resumed training redoes the steps after its checkpoint).

        Returns ``(online, run_id, deduper)``; offline when the server does not answer.
        """
        deduper = MetricDeduper()
        try:
            run_id = self._reattach_or_create(client, spec, run_id)
            spec["run_id"] = run_id
            spool.write_spec(spec)
            if spool.has_pending():  # left by an earlier attempt: it goes first, in order
                replay(spool, client)
            if self.request["resumed"]:
                deduper.skip_through = logged_max_steps(client, run_id)
            return True, run_id, deduper
        except Exception as error:  # noqa: BLE001 - unreachable server: go on offline
            if is_permanent_error(error):
                raise  # a bad experiment name or parent run: no retry would fix it
            spec["run_id"] = run_id
            spool.write_spec(spec)
            logger.warning(
                "MLflow tracking server %s unreachable (%s): training goes on; tracking data is kept in %s",
                self.tracking_uri, str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
                spool.directory,
            )
            return False, run_id, deduper

    def _reattach_or_create(self, client: Any, spec: dict[str, Any], run_id: str | None) -> str:
        if run_id:
            try:
                client.get_run(run_id)
                logger.info("Reattached to MLflow run %s", run_id)
                return run_id
            except Exception as error:
                if not is_permanent_error(error):
                    raise
                logger.warning("MLflow run %s not found (%s): starting a new run", run_id, str(error)[:200])
        run_id = create_run(client, spec)
        logger.info("MLflow run %s in experiment %r at %s", run_id, self.request["experiment_name"], self.tracking_uri)
        return run_id

    def describe(self) -> None:
        """Tags, params, dataset inputs and the config artifact; the system metrics monitor."""
        from medkit_exp.tracking.context import context_tags
        from medkit_exp.tracking.datasets import DatasetInfo, entity_dict

        request, submit = self.request, self.submit
        if request["resumed"]:
            submit({"op": "status", "status": "RUNNING", "end_time": None})
        submit({"op": "tags", "tags": {**context_tags(request["argv"]), **request["tags"]}})
        submit({"op": "params", "params": request["params"]})
        if request["datasets"]:
            infos = [DatasetInfo(**fields) for fields in request["datasets"]]
            submit({"op": "inputs", "datasets": [{"entity": entity_dict(info), "context": info.context} for info in infos]})
        if request["config_folder"]:
            submit({"op": "artifact", "local_path": request["config_folder"], "artifact_path": "config"})
        if request["system_metrics"] and self.online:
            self._monitor = start_system_metrics(self.run_id, self.tracking_uri, resume=request["resumed"])

    # ------------------------------------------------------------------ operations
    @property
    def run_id(self) -> str | None:
        return self.logger.run_id if self.logger is not None else None

    @property
    def online(self) -> bool:
        return self.logger is not None and self.logger.online

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "online": self.online}

    def submit(self, op: dict[str, Any]) -> None:
        assert self.logger is not None, "open() first"
        self.logger.submit(redact_op(op))  # nothing secret goes to MLflow or to the spool

    def wake(self) -> None:
        if self.logger is not None:
            self.logger.wake()

    def flush(self, timeout: float | None = None) -> bool:
        return self.logger.flush(timeout) if self.logger is not None else True

    def run_task(self, function: TaskFunction | str, kwargs: dict[str, Any]) -> None:
        """Call ``function(run=RunHandle(run_id, uri), **kwargs)``; log a failure."""
        # The run id is "" while the run is not created (MLflow away since the start): the
        # handle's uploads still go to the queue, hence to the spool.
        call_task(function, RunHandle(self.run_id or "", self.tracking_uri or "", session=self), kwargs)

    # ------------------------------------------------------------------ end
    def stop_monitor(self) -> None:
        if self._monitor is not None:
            stop_system_metrics(self._monitor)
            self._monitor = None

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Send (or spool) everything, stop the sender; the run id and what is left in the spool."""
        self.stop_monitor()
        if self.logger is None:
            return {"run_id": None, "pending": 0, "spool_dir": None}
        self.logger.close(timeout)
        spool = self.logger.spool
        return {"run_id": self.logger.run_id, "pending": len(spool.pending()) if spool.has_pending() else 0,
                "spool_dir": str(spool.directory)}


TaskFunction = Callable[..., None]


def task_reference(function: TaskFunction | str) -> str:
    """``"module:function"`` for a module-level function (what another process can import)."""
    if isinstance(function, str):
        return function
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or "." in name or "<" in name:
        raise TypeError(f"an MLflow task must be a module-level function, got {function!r}")
    return f"{module}:{name}"


def task_function(function: TaskFunction | str) -> TaskFunction:
    """The function itself; a ``"module:function"`` string (older callers) imported."""
    if not isinstance(function, str):
        return function
    module, name = function.split(":")
    return getattr(importlib.import_module(module), name)


def call_task(function: TaskFunction | str, run: RunHandle, kwargs: dict[str, Any]) -> None:
    """``function(run=run, **kwargs)``; a failure is logged, not raised."""
    started = time.perf_counter()
    label = task_reference(function) if isinstance(function, str) else getattr(function, "__qualname__", repr(function))
    try:
        task_function(function)(run=run, **kwargs)
    except Exception:  # noqa: BLE001 - the run's data is safe; report and go on
        logger.exception("MLflow task %s failed", label)
    logger.debug("MLflow task %s took %.2fs", label, time.perf_counter() - started)
