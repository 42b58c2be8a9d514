"""Helpers of the tracking tests: signals, failing components, ports, metric steps."""

from __future__ import annotations

import os
import signal
import socket

from medkit_exp.training import TrainerCallback
from tests.training.toy import ToyTextClassifier


class SignalAt(TrainerCallback):
    """Sends a signal to this process after optimizer step ``step`` (the Trainer handles it)."""

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_step_end(self, step_idx, nb_batches, phase):
        if phase == "train" and self.state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class FailingToy(ToyTextClassifier):
    """A toy component whose forward raises at its ``fail_at``-th training call."""

    def __init__(self, fail_at: int, **kwargs):
        super().__init__(dropout=0.0, **kwargs)
        self.fail_at, self.calls = fail_at, 0

    def forward(self, input_batch, return_loss, eval_mode):
        if not eval_mode:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("boom at a training batch")
        return super().forward(input_batch, return_loss, eval_mode)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def tag_task(run, key: str, value: str) -> None:
    """An MLflow task (module-level, so a tracking worker can import it): tag the run."""
    run.client.set_tag(run.run_id, key, value)


def env_tag_task(run, name: str) -> None:
    """An MLflow task: tag the run with the environment variable ``name`` as its process sees it."""
    import os

    run.client.set_tag(run.run_id, f"env.{name}", os.environ.get(name, "<unset>"))
