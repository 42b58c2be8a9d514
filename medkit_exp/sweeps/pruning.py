"""The training callback of a sweep trial: reports each evaluation to Optuna and prunes.

>>> callback = OptunaPruningCallback(current_trial(), metric="f1")             # doctest: +SKIP
>>> Trainer(component, config, train, dev, callback=[mlflow_cb, callback]).train()  # doctest: +SKIP

The application adds it through config only: ``hparams_search=ner_optuna`` sets the entry
``callbacks.pruning`` (``_target_: medkit_exp.sweeps.pruning.pruning_callbacks``, a factory given
the run), which the callbacks' instantiator builds after the tracking entry.

At every evaluation the tracked metric is reported to the trial (``trial.report(value, step)``)
with step = the number of the evaluation (1, 2, ...; the epoch with ``eval_strategy=epoch``), so
that trials with different batch sizes are compared at the same point of their training (the
optimizer step would differ) and a pruner's ``n_warmup_steps`` counts evaluations. When the
study's pruner rejects the trial, the callback asks the loop to stop (a last checkpoint is
saved, the MLflow run ends normally) and records it in the
:class:`~medkit_exp.sweeps.trial_context.TrialContext`; the sweeper then tells Optuna the trial was
PRUNED and marks its MLflow run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from medkit_exp.run_context import RunContext
from medkit_exp.sweeps.trial_context import TrialContext, current_trial
from medkit_exp.training.callbacks import TrainerCallback

logger = logging.getLogger(__name__)


class OptunaPruningCallback(TrainerCallback):
    """Report ``metric`` at each evaluation to the context's trial; stop a pruned trial.

    context: the trial (:func:`medkit_exp.sweeps.trial_context.current_trial`).
    metric: the eval metric the sweep optimises (the app's ``optimized_metric``).
    run_id_of: returns the MLflow run id of this training (None without tracking); it is recorded in
        the context so that the sweeper can mark the run's trial state.
    """

    state_key = "OptunaPruningCallback"

    def __init__(self, context: TrialContext, metric: str, run_id_of: Callable[[], str | None] | None = None):
        self.context = context
        self.metric = metric
        self.run_id_of = run_id_of
        self._warned = False

    def on_train_begin(self, config: Any) -> None:
        self._record_run_id()

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            if not self._warned:
                logger.warning("Eval metric %r missing or not finite (%s): not reported to Optuna", self.metric, value)
                self._warned = True
            return
        trial, evaluation = self.context.trial, self.state.nb_evaluations
        trial.report(float(value), evaluation)
        self.context.reported[evaluation] = float(value)
        if self.context.pruning and trial.should_prune():
            self.context.pruned_at_step = step
            logger.info("Trial %d pruned at evaluation %d, step %d (%s=%.4f)", self.context.number, evaluation, step,
                        self.metric, value)
            self.control.request_stop(f"pruned by Optuna at evaluation {evaluation} (step {step})")

    def on_train_end(self) -> None:
        self._record_run_id()
        self.context.interrupted = bool(getattr(self.state, "interrupted", False))

    def on_exception(self, exception: BaseException) -> None:
        self._record_run_id()

    def _record_run_id(self) -> None:
        if self.run_id_of is not None:
            run_id = self.run_id_of()
            if run_id:
                self.context.child_run_id = run_id


def pruning_callbacks(run: RunContext, *, metric: str) -> list[OptunaPruningCallback]:
    """The config entry ``callbacks.pruning``: in a trial of the sweeper, the callback reporting
    ``metric`` to the trial, which records the run's tracker run id (``run.tracking_run_id``);
    outside a trial, none (a warning says so: the entry is then left unused)."""
    trial = current_trial()
    if trial is None:
        logger.warning("callbacks.pruning: this run is no trial of the medkit_optuna sweeper: no pruning callback")
        return []
    # read at each call: the tracking factory sets run.tracking_run_id when it builds its callback
    return [OptunaPruningCallback(trial, metric, run_id_of=lambda: run.tracking_run_id())]
