"""What the loop accumulates between two logs or two evaluations: mean losses, throughput,
the metric computer's inputs.

>>> import torch
>>> loss = RunningMean(torch.device("cpu"))
>>> loss.add(torch.tensor(1.0)); loss.add(torch.tensor(2.0))
>>> loss.mean(), loss.count
(1.5, 2)
>>> loss.reset(); loss.mean() is None
True
"""

from __future__ import annotations

import time
from typing import Any

import torch

from medkit_exp.training.metrics import MetricInputs, MetricsComputer


class RunningMean:
    """The mean of the values added since the last reset.

    The sum stays on ``device``: adding a loss never waits for the accelerator; only
    :meth:`mean` does (once per log or evaluation).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.total = torch.zeros((), device=device)
        self.count = 0

    def add(self, value: torch.Tensor) -> None:
        self.total += value.float()
        self.count += 1

    def mean(self) -> float | None:
        """The mean, or None when nothing was added."""
        return (self.total / self.count).item() if self.count else None

    def reset(self) -> None:
        self.total = torch.zeros((), device=self.device)
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        # The keys of the windows of checkpoints written before this class existed.
        return {"loss": self.total, "batches": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["loss"].to(self.device)
        self.count = int(state["batches"])


class Throughput:
    """Samples and wall-clock seconds since the last reset, as rates."""

    def __init__(self) -> None:
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, nb_samples: int) -> None:
        self.samples += nb_samples

    def rates(self, nb_steps: int) -> dict[str, float]:
        """``samples_per_second`` and ``steps_per_second`` (``nb_steps`` optimizer steps done)."""
        elapsed = time.perf_counter() - self.start
        if elapsed <= 0:
            return {"samples_per_second": 0.0, "steps_per_second": 0.0}
        return {"samples_per_second": self.samples / elapsed, "steps_per_second": nb_steps / elapsed}

    def reset(self) -> None:
        self.samples = 0
        self.start = time.perf_counter()


class Windows:
    """The running sums of the current log window (loss, throughput) and evaluation window
    (loss and metric inputs: the training metrics of the next history entry)."""

    def __init__(self, device: torch.device):
        self.log_loss, self.throughput = RunningMean(device), Throughput()
        self.train_loss, self.train_inputs = RunningMean(device), MetricInputs()

    def train_metrics(self, computer: MetricsComputer | None) -> dict[str, float]:
        """The training metrics of the evaluation window: the mean loss, and ``computer``'s."""
        loss = self.train_loss.mean()
        metrics = {} if loss is None else {"loss": loss}
        if computer is not None and self.train_inputs:
            metrics.update(self.train_inputs.compute(computer))
        return metrics

    def reset_train(self) -> None:
        self.train_loss.reset()
        self.train_inputs.reset()

    def take_log(self, learning_rate: float, epoch: float, logging_steps: int, grad_norm: Any) -> dict[str, float]:
        """The log window's values (mean loss, learning rate, fractional epoch, throughput,
        gradient norm if measured), and a new window."""
        loss = self.log_loss.mean()
        logs = {
            "loss": float("nan") if loss is None else loss,
            "learning_rate": learning_rate,
            "epoch": epoch,
            **self.throughput.rates(logging_steps),
        }
        if grad_norm is not None:
            logs["grad_norm"] = float(grad_norm)
        self.log_loss.reset()
        self.throughput.reset()
        return logs

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the clock restarts on resume)."""
        return {
            "eval": self.train_loss.state_dict(),
            "log": {**self.log_loss.state_dict(), "samples": self.throughput.samples},
            "train_metric_data": self.train_inputs.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_loss.load_state_dict(state["eval"])
        self.log_loss.load_state_dict(state["log"])
        self.throughput.samples = state["log"]["samples"]
        self.train_inputs.load_state_dict(state["train_metric_data"])
