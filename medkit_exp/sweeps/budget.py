"""``n_trials`` counts the trials of the whole study, over every run and every worker.

A trial counts once it is asked (RUNNING, COMPLETE, PRUNED, FAIL) or queued (WAITING), except
a stale trial that was queued again (its retry counts instead) and a surplus trial (below).
Workers sharing a study each ask for a trial while the study holds fewer than ``n_trials``;
two workers asking at the same instant for the last slot both get a trial from Optuna, so after
``ask()`` a worker checks its trial's rank: a trial that would exceed ``n_trials`` is not run,
it is closed as FAIL with the user attribute ``surplus`` (and does not count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medkit_exp.sweeps.heartbeat import RETRIED_ATTR

SURPLUS_ATTR = "surplus"


def counts(trial: Any) -> bool:
    """Whether a (frozen) trial takes one of the study's ``n_trials`` slots."""
    attrs = trial.user_attrs
    return not attrs.get(SURPLUS_ATTR) and not attrs.get(RETRIED_ATTR)


def counted(trials: Sequence[Any]) -> int:
    return sum(1 for trial in trials if counts(trial))


def has_room(study: Any, n_trials: int) -> bool:
    """True while the study holds fewer than ``n_trials`` counted trials, or a queued one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return counted(trials) < n_trials or any(t.state == TrialState.WAITING for t in trials)


def is_surplus(study: Any, number: int, n_trials: int) -> bool:
    """True when the counted trials numbered before ``number`` already fill ``n_trials``."""
    return counted([t for t in study.get_trials(deepcopy=False) if t.number < number]) >= n_trials


def close_surplus(study: Any, trial: Any) -> None:
    """Close a trial asked beyond ``n_trials`` without running it."""
    from optuna.trial import TrialState

    trial.set_user_attr(SURPLUS_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
