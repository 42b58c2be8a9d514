"""Heartbeats of running trials, so that a trial whose worker died is failed and run again.

While a trial runs, a thread stamps it (user attribute ``heartbeat``, seconds since the epoch)
every ``interval`` seconds. When a worker starts, every RUNNING trial whose last stamp is older
than the grace period belongs to a worker that was killed: it is marked FAIL (user attribute
``stale``) and, up to ``retries`` times, queued again with the same parameters (a WAITING
trial with ``retry_of`` = the number of the first attempt), which the next ``ask()`` of any
worker picks up.

This works with every storage (Optuna's own heartbeat exists only for RDB storages); clocks
of the machines sharing a study should agree to well within the grace period.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
STALE_ATTR = "stale"
RETRY_OF_ATTR = "retry_of"
RETRY_COUNT_ATTR = "retry_count"
RETRIED_ATTR = "retried"  # on a stale trial that was queued again: it no longer counts


class HeartbeatThread:
    """Stamps one trial every ``interval`` seconds until :meth:`stop` (use as a context manager)."""

    def __init__(self, trial: Any, interval: float):
        self.trial = trial
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-trial-{trial.number}", daemon=True)

    def __enter__(self) -> HeartbeatThread:
        self.beat()  # at once: a trial is never RUNNING without a stamp for long
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def beat(self) -> None:
        self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as error:  # noqa: BLE001 - a missed stamp must not kill the trial
                logger.warning("Heartbeat of trial %s not recorded: %s", self.trial.number, error)


def fail_stale_trials(study: Any, grace_period: float, retries: int, now: float | None = None) -> list[int]:
    """Fail the RUNNING trials silent for more than ``grace_period`` seconds; queue retries.

    Returns the numbers of the trials this call failed (another worker may fail some first).
    """
    import optuna
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        stamp = trial.user_attrs.get(HEARTBEAT_ATTR)
        if stamp is None or now - float(stamp) <= grace_period:
            continue
        retry = int(trial.user_attrs.get(RETRY_COUNT_ATTR, 0)) < retries
        try:
            handle = optuna.trial.Trial(study, trial._trial_id)
            handle.set_user_attr(STALE_ATTR, True)
            if retry:
                handle.set_user_attr(RETRIED_ATTR, True)
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile, or failed by another worker: that one retries it
        failed.append(trial.number)
        logger.warning(
            "Trial %d was left RUNNING by a worker silent for %.0f s: marked FAIL%s", trial.number,
            now - float(stamp), ", queued again" if retry else f" (stale_trial_retries={retries} reached)",
        )
        if retry:
            _queue_retry(study, trial)
    return failed


def _queue_retry(study: Any, trial: Any) -> None:
    import optuna
    from optuna.trial import TrialState

    user_attrs = {
        RETRY_OF_ATTR: int(trial.user_attrs.get(RETRY_OF_ATTR, trial.number)),
        RETRY_COUNT_ATTR: int(trial.user_attrs.get(RETRY_COUNT_ATTR, 0)) + 1,
    }
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, user_attrs=user_attrs
        )
    )
