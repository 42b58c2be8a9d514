"""MLflow's system metrics (CPU, memory, disk, network, GPU: ``system/*``) for a run, through
MLflow's public API: ``mlflow.start_run(run_id, log_system_metrics=True)`` starts MLflow's
monitor for the run, ``mlflow.end_run()`` stops it and sends what it sampled.

The monitor publishes once per sampling interval (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``,
10 s by default): a run shorter than one interval gets no ``system/*`` metrics, and a warning says
so. (We took a last sample at the end before, through the monitor's private methods; the public
API has no such call.)
"""

from __future__ import annotations

import logging
import os
import time

from medkit_exp.tracking.uris import fluent_tracking_uri

logger = logging.getLogger("medkit_exp.tracking.callback")


class SystemMetrics:
    """The monitor of one run, started and stopped from the same thread (MLflow's fluent runs
    are per thread): the worker's main loop, or the training thread."""

    def __init__(self, run_id: str, tracking_uri: str):
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self._started = False
        self._started_at = 0.0

    def start(self) -> bool:
        import mlflow

        try:
            with fluent_tracking_uri(self.tracking_uri):  # the monitor keeps the URI it sees now
                active = mlflow.active_run()
                mlflow.start_run(run_id=self.run_id, nested=active is not None, log_system_metrics=True)
            self._started = True
            self._started_at = time.monotonic()
        except Exception as error:  # noqa: BLE001 - optional: psutil missing, no GPU library...
            logger.warning("MLflow system metrics are not logged: %s", error)
        return self._started

    def stop(self) -> None:
        """Stop the monitor (it sends what it sampled). The run stays RUNNING: its final status
        and end time come later, with the run's other operations."""
        import mlflow

        if not self._started:
            return
        self._started = False
        elapsed, needed = time.monotonic() - self._started_at, first_publication_after()
        if elapsed < needed:
            logger.warning("MLflow system metrics: none logged for run %s: it monitored %.1fs, less than one "
                           "sampling period (%gs; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL sets it)",
                           self.run_id, elapsed, needed)
        try:
            launcher_run_id = os.environ.get("MLFLOW_RUN_ID")  # end_run unsets it; `mlflow run` set it
            with fluent_tracking_uri(self.tracking_uri):
                mlflow.end_run(status="RUNNING")
            if launcher_run_id is not None:
                os.environ["MLFLOW_RUN_ID"] = launcher_run_id
        except Exception as error:  # noqa: BLE001 - optional metrics never fail a run
            logger.warning("MLflow system metrics: the monitor did not stop cleanly: %s", error)


def first_publication_after() -> float:
    """Seconds until MLflow's monitor first sends metrics: its sampling interval times the samples
    it aggregates (its own defaults, 10 s and 1, unless the environment sets them)."""
    from mlflow.environment_variables import (
        MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL,
    )

    interval = MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or 10
    samples = MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING.get() or 1
    return float(interval) * int(samples)
