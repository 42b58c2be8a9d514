"""One run's MLflow work: open the run, describe it, send its operations, run its tasks, close it.

:class:`RunTracker` handles the messages of :mod:`medkit_exp.tracking.messages` for one run,
from a request made of plain data (built by ``MLflowCallback._run_request``). It runs in the
training process (:class:`~medkit_exp.tracking.session.RunSession`) or in a tracking worker
process (:mod:`medkit_exp.tracking.worker`), which keeps MLflow's imports, store and sends out of
the training process. :meth:`RunTracker.handle` is the one place a request is dispatched, by its
type; the operations go to an :class:`~medkit_exp.tracking.sink.AsyncRunLogger`, which sends
them (:func:`medkit_exp.tracking.ops.apply_op`) or spools them.

- :class:`Open`: reattach to the run or create it (replaying what this output folder spooled
  earlier first); ``{"run_id", "online", "tracking_uri"}``. An error MLflow would repeat (a bad
  experiment name or parent run) raises.
- :class:`Describe`: tags (git, command, host, versions...), params, dataset inputs, the config
  artifact; starts the system metrics monitor.
- an operation, :class:`Wake`, :class:`Flush`, :class:`State`: to the sender.
- :class:`RunTask`: ``function(run=RunHandle, **kwargs)`` (drawing a plot, logging a model); a
  failure is logged, never raised.
- :class:`StopMonitor`, :class:`Close`: ``{"run_id", "pending", "spool_dir"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medkit_exp.tracking.messages import (
    OPERATION_TYPES, Close, Describe, Flush, LogArtifacts, LogInputs, LogParams, Open, Operation, RunTask,
    SessionRequest, SetStatus, SetTags, State, StopMonitor, Wake, now_ms,
)
from medkit_exp.tracking.ops import (
    MetricDeduper, create_run, is_permanent_error, logged_max_steps, mark_training_experiment, redact_op,
)
from medkit_exp.tracking.run_handle import RunHandle
from medkit_exp.tracking.session_protocol import TrackingSession
from medkit_exp.tracking.sink import AsyncRunLogger
from medkit_exp.tracking.spool import RunSpool, replay, replay_uri, run_spools
from medkit_exp.tracking.store import prepare_store
from medkit_exp.tracking.system_metrics import SystemMetrics
from medkit_exp.tracking.tasks import call_task
from medkit_exp.tracking.uris import configure_http_env, resolve_tracking_uri

logger = logging.getLogger("medkit_exp.tracking.callback")  # the callback's messages, wherever they run


class RunTracker:
    """See the module docstring. ``session``: the session (in this process) the tasks' run
    handles point to, so that their uploads join the run's queue."""

    def __init__(self, request: Mapping[str, Any], session: TrackingSession | None = None):
        self.request = request
        self.session = session
        self.tracking_uri: str | None = None
        self.experiment_id: str | None = None  # the run's, once it is reached (the UI link names it)
        self.logger: AsyncRunLogger | None = None
        self._monitor: SystemMetrics | None = None

    def handle(self, message: SessionRequest) -> Any:
        """Do what ``message`` asks; its answer (None for those that need none)."""
        match message:
            case _ if isinstance(message, OPERATION_TYPES) and self.logger is not None:  # the usual one: first
                self.submit(message)  # type: ignore[arg-type]
            case Open():
                return self.open()
            case _ if self.logger is None:
                raise RuntimeError(f"{type(message).__name__} before Open")
            case Describe():
                self.describe()
            case Wake():
                self.logger.wake()
            case Flush(timeout=timeout):
                return self.logger.flush(timeout)
            case State():
                return self.state()
            case RunTask(function=function, kwargs=kwargs):
                # The run id is "" while the run is not created (MLflow away since the start): the
                # handle's uploads still go to the queue, hence to the spool.
                call_task(function, RunHandle(self.run_id or "", self.tracking_uri or "", self.session), kwargs)
            case StopMonitor():
                self.stop_monitor()
            case Close(timeout=timeout):
                return self.close(timeout)
            case _:
                raise TypeError(f"not a tracking request: {message!r}")
        return None

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
        return {"run_id": run_id, "online": online, "tracking_uri": uri, "experiment_id": self.experiment_id}

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

    def _open_run(self, client: Any, spool: RunSpool, spec: dict[str, Any],
                  run_id: str | None) -> tuple[bool, str | None, MetricDeduper]:
        """Reattach to ``run_id`` (or create the run), send what this run spooled earlier, and
        note the steps the run has (a resumed training redoes the steps after its checkpoint).

        Returns ``(online, run_id, deduper)``; offline when the server does not answer.
        """
        deduper = MetricDeduper()
        try:
            run_id = self._reattach_or_create(client, spec, run_id)
            self.experiment_id = client.get_run(run_id).info.experiment_id
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
                run = client.get_run(run_id)
                # A run `mlflow run` created: its experiment was made without our kind tag.
                mark_training_experiment(client, client.get_experiment(run.info.experiment_id))
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
            submit(SetStatus("RUNNING"))
        submit(SetTags({**context_tags(request["argv"]), **request["tags"]}))
        submit(LogParams(request["params"]))
        if request["datasets"]:
            infos = [DatasetInfo(**fields) for fields in request["datasets"]]
            submit(LogInputs(tuple({"entity": entity_dict(info), "context": info.context} for info in infos)))
        if request["config_folder"]:
            submit(LogArtifacts(request["config_folder"], "config"))
        if request["system_metrics"] and self.online and self.run_id and self.tracking_uri:
            self._monitor = SystemMetrics(self.run_id, self.tracking_uri)
            self._monitor.start()

    # ------------------------------------------------------------------ operations
    @property
    def run_id(self) -> str | None:
        return self.logger.run_id if self.logger is not None else None

    @property
    def online(self) -> bool:
        return self.logger is not None and self.logger.online

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "online": self.online}

    def submit(self, op: Operation) -> None:
        assert self.logger is not None, "open() first"
        self.logger.submit(redact_op(op))  # nothing secret goes to MLflow or to the spool

    # ------------------------------------------------------------------ end
    def stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
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
