"""medkit's ``training.callbacks`` module: the callback events and the state and control they
see (defined in :mod:`~medkit_exp.training.events`), the default printer (in
:mod:`~medkit_exp.training.printer`) and early stopping.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from medkit_exp.errors import ConfigError
from medkit_exp.training.config import check_metric_name
from medkit_exp.training.events import (  # noqa: F401 (EVENTS, CallbackList, ReadOnlyState: for their importers)
    EVENTS, CallbackList, ReadOnlyState, TrainerCallback, TrainerControl, TrainerState,
)
from medkit_exp.training.printer import DefaultPrinterCallback

__all__ = ["DefaultPrinterCallback", "EarlyStoppingCallback", "TrainerCallback", "TrainerControl", "TrainerState"]

logger = logging.getLogger(__name__)


class EarlyStoppingCallback(TrainerCallback):
    """Stops training when an eval metric has not improved for ``patience`` evaluations.

    >>> EarlyStoppingCallback(metric="f1", patience=3, mode="max", min_delta=0.001).monitor
    'f1'
    """

    def __init__(self, metric: str = "loss", patience: int = 3, min_delta: float = 0.0, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ConfigError("early_stopping.mode", f"must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ConfigError("early_stopping.patience", f"must be >= 1, got {patience}")
        if min_delta < 0:
            raise ConfigError("early_stopping.min_delta", f"must be >= 0, got {min_delta}")
        self.monitor = metric
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.best: float | None = None
        self.bad_evaluations = 0

    def check_metric_names(self, names: list[str]) -> None:
        lead = f"Early stopping metric '{self.monitor}' not found"
        check_metric_name(f"{type(self).__name__}.metric", self.monitor, names, lead=lead)

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"early stopping metric '{self.monitor}' not in eval metrics; available: {sorted(metrics)}"
            )
        if self._improves(value):
            self.best = value
            self.bad_evaluations = 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            logger.info(
                "Early stopping at step %d: eval %s has not improved on %.5f for %d evaluations",
                step, self.monitor, self.best, self.bad_evaluations,
            )
            self.control.request_stop("early_stopping")

    def _improves(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.bad_evaluations = state["bad_evaluations"]


class Timer:
    """Wall-clock seconds since creation (or the last ``reset``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def reset(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
