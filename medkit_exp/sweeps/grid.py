"""Optuna's grid sampler for an ask/tell loop.

``GridSampler.after_trial`` calls ``study.stop()`` once the grid is covered, which Optuna allows
only inside ``study.optimize()``; the sweeper asks :meth:`GridSampler.is_exhausted` instead
before each trial and stops there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.samplers import GridSampler


class AskTellGridSampler(GridSampler):
    """A :class:`optuna.samplers.GridSampler` that leaves stopping to the caller."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
        return None
