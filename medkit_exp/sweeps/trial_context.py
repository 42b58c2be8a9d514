"""The trial a sweep job belongs to, as the running job sees it.

The sweeper runs each trial's job in its own process through Hydra's basic launcher, one after
the other. Before launching a job it publishes the trial here; the application
(``medkit_exp.cli.build_callbacks``) reads it to add the pruning callback and to make the
job's MLflow run a child of the sweep's parent run. The job writes back what the sweeper needs
to know afterwards (pruned, interrupted, its MLflow run id).

This module imports nothing heavy, so the application can look at it at no cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_current: TrialContext | None = None


@dataclass
class TrialContext:
    """One trial of a sweep, shared between the sweeper and the job that runs it.

    trial: the ``optuna.Trial`` (report intermediate values, ask whether to prune).
    study_name: the Optuna study the trial belongs to.
    parent_run_id: the sweep's MLflow parent run (None when tracking is off or unreachable).
    pruning: False reports intermediate values but never stops the trial.
    """

    trial: Any
    study_name: str
    parent_run_id: str | None = None
    pruning: bool = True
    # written by the job
    pruned_at_step: int | None = None  # the optimizer step where the pruner stopped the trial
    interrupted: bool = False
    child_run_id: str | None = None
    reported: dict[int, float] = field(default_factory=dict)  # evaluation number -> value

    @property
    def number(self) -> int:
        return int(self.trial.number)

    @property
    def pruned(self) -> bool:
        return self.pruned_at_step is not None

    def child_tags(self) -> dict[str, str]:
        """Tags that tie a job's MLflow run to its study and trial."""
        return {"optuna.study_name": self.study_name, "optuna.trial_number": str(self.number)}


def current_trial() -> TrialContext | None:
    """The trial the running job belongs to; None outside a sweep by this sweeper."""
    return _current


@contextlib.contextmanager
def active_trial(context: TrialContext) -> Iterator[TrialContext]:
    """Publish ``context`` while the job of its trial runs."""
    global _current
    previous, _current = _current, context
    try:
        yield context
    finally:
        _current = previous
