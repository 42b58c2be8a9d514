"""The best evaluation of a run so far, as metrics: ``best/<key>`` and ``best/step``.

A runs table sorted by the last ``eval/f1`` ranks a run by its last evaluation, which is not the
checkpoint it keeps; ``best/eval/f1`` ranks it by its best one. The tracked metric is the
TrainerConfig's ``checkpoint_metric`` (lower is better when ``minimize_checkpoint_metric``), the
one that picks the best checkpoint; its companions are the other summary ``eval/*`` values of the
same evaluation, so that ``best/eval/precision`` is the precision *at* the best F1. Per-label values
(``eval/labels/<label>/...``) get no ``best/`` copy: a run's charts would start with dozens of flat
lines; they stay in the run's history and are linked to the logged model
(:mod:`medkit_exp.tracking.model_link` reads :attr:`BestValues.values`, all of them).

>>> best = BestValues("f1", minimize=False)
>>> best.update({"eval/f1": 0.5, "eval/loss": 1.0, "eval/labels/test/f1": 0.2}, step=10)
{'best/eval/f1': 0.5, 'best/eval/loss': 1.0, 'best/step': 10.0}
>>> best.update({"eval/f1": 0.4, "eval/loss": 0.9}, step=20)
{'best/eval/f1': 0.5, 'best/eval/loss': 1.0, 'best/step': 10.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PREFIX = "best/"
PER_LABEL_PREFIX = "eval/labels/"  # per-label values: no best/ copy (see the module docstring)


class BestValues:
    """The ``eval/*`` values of the evaluation where ``eval/<metric>`` was best so far."""

    def __init__(self, metric: str | None = None, minimize: bool = False):
        self.metric = metric
        self.minimize = minimize
        self.values: dict[str, float] = {}
        self.step: int | None = None
        self.timestamp: int | None = None  # of the best evaluation's points (ms): linked again, they are the same

    def reset(self, metric: str | None, minimize: bool) -> None:
        self.metric, self.minimize = metric, minimize
        self.values, self.step, self.timestamp = {}, None, None

    @property
    def key(self) -> str | None:
        return f"eval/{self.metric}" if self.metric else None

    def update(self, values: Mapping[str, float], step: int, timestamp: int | None = None) -> dict[str, float]:
        """Take an evaluation's logged values (and their timestamp); the ``best/*`` metrics to log
        at its step (empty while the tracked metric was never a finite number)."""
        value = values.get(self.key) if self.key else None
        if value is not None and math.isfinite(float(value)) and self._better(float(value)):
            self.values = {key: float(v) for key, v in values.items() if key.startswith("eval/")}
            self.step, self.timestamp = int(step), timestamp
        return self.metrics()

    def metrics(self) -> dict[str, float]:
        if self.step is None:
            return {}
        summary = {PREFIX + key: value for key, value in self.values.items() if not key.startswith(PER_LABEL_PREFIX)}
        return {**summary, f"{PREFIX}step": float(self.step)}

    def _better(self, value: float) -> bool:
        if self.step is None:
            return True
        current = self.values[self.key]  # type: ignore[index]
        return value < current if self.minimize else value > current

    def state_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "step": self.step, "timestamp": self.timestamp}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = dict(state.get("values") or {})
        self.step = state.get("step")
        self.timestamp = state.get("timestamp")
