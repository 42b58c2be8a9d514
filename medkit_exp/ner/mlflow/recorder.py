"""What the evaluations predicted, kept for the dev report (so that it need not predict again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medkit_exp.training.callbacks import TrainerCallback


class EvalPredictionRecorder(TrainerCallback):
    """Keeps what the evaluations predicted (a recording of the metrics computer, see
    :meth:`~medkit_exp.ner.metrics.EntityMetricsComputer.start_recording`) for the checkpoints a
    report may be on: the best and the last. An evaluation runs at a step before its checkpoint is
    saved, on the same weights."""

    def __init__(self, metrics_computer: Any):
        self.metrics_computer = metrics_computer
        self._rows: dict[str, list[Any]] = {}  # checkpoint name -> recorded rows
        self._last_pass: list[Any] | None = None  # the last evaluation pass, until its on_evaluate

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if phase == "eval" and step_idx == 0:
            self.metrics_computer.start_recording()

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if phase == "eval" and step_idx == nb_batches - 1:  # training batches are never recorded
            self._last_pass = self.metrics_computer.take_recording()

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        from medkit_exp.training.checkpoint import checkpoint_name

        rows, self._last_pass = self._last_pass, None
        kept = {Path(path).name for path in (self.state.best_checkpoint, self.state.last_checkpoint) if path}
        self._rows = {name: recorded for name, recorded in self._rows.items() if name in kept}
        if rows:
            self._rows[checkpoint_name(step)] = rows

    def rows(self, checkpoint: str | Path) -> list[Any] | None:
        """The rows recorded at the evaluation of ``checkpoint``'s step, if any."""
        return self._rows.get(Path(checkpoint).name)
