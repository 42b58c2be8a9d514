"""The default printer: what a run shows in the terminal and in its log.

One log line when training starts, one per evaluation (step, epoch, losses, the tracked metric
and the best value so far), one when an epoch ends and one at the end; the whole metrics table
at each evaluation on demand (``full_metrics=True``). On a terminal, one progress bar covers
the whole run (epoch k/n, optimizer steps, loss, throughput, ETA) and a transient one each
evaluation pass. Bars go to stderr only; log records never carry terminal escape codes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from typing import Any

from medkit_exp.training.events import TrainerCallback

__all__ = ["DefaultPrinterCallback", "format_metrics_table"]


def _number(value: float) -> str:
    """A metric value as read: integers as integers (a count is not ``68.000``), else 4 digits."""
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def format_metrics_table(title: str, metrics: dict[str, float] | None) -> str:
    """``title`` then one ``name  value`` line per numeric metric, names aligned ("" if none).

    >>> print(format_metrics_table("eval", {"f1": 0.5, "labels/X/f1": 1.0}))
    eval:
      f1           0.5000
      labels/X/f1  1
    """
    numbers = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not numbers:
        return ""
    width = max(len(name) for name in numbers)
    return "\n".join([f"{title}:", *(f"  {name:<{width}}  {_number(value)}" for name, value in numbers.items())])


def _console_level(logger: logging.Logger) -> int:
    """The level of the handler writing ``logger``'s records to the terminal (NOTSET: none)."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
            return handler.level
    return logging.NOTSET


class DefaultPrinterCallback(TrainerCallback):
    """Logs the run (start, one line per evaluation, epoch ends, end) and shows progress bars.

    ``progress_bar``: None shows the bars when stderr is a terminal, ``True``/``False`` forces
    them on/off. ``full_metrics``: also log every metric of each evaluation as a table.
    The tracked metric is the Trainer's ``checkpoint_metric`` (higher is better unless
    ``minimize_checkpoint_metric``).
    """

    def __init__(self, progress_bar: bool | None = None, full_metrics: bool = False):
        self.logger = logging.getLogger("DefaultPrinterCallback")
        if not self.logger.handlers and not logging.getLogger().handlers:
            # Used from plain Python with logging unconfigured: print like medkit's printer does.
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
        self.progress_bar = progress_bar
        self.full_metrics = full_metrics
        self._bar: Any = None
        self._eval_bar: Any = None
        self._redirect: contextlib.ExitStack | None = None
        self._metric, self._minimize = "loss", True
        self._best: tuple[float, int] | None = None
        self._loss: float | None = None
        self._samples_per_second: float | None = None
        self._config_epochs: int | None = None
        self._accumulation = 1
        self._bar_epoch = 0  # the epoch the bar's description names
        self._stale_postfix = False  # a log changed the loss or throughput the bar shows

    # ------------------------------------------------------------------ events
    def on_train_begin(self, config: Any) -> None:
        self._metric = getattr(config, "checkpoint_metric", "loss") or "loss"
        self._minimize = bool(getattr(config, "minimize_checkpoint_metric", self._metric == "loss"))
        self._best = None
        self._config_epochs = getattr(config, "nb_training_epochs", None)
        self._accumulation = max(1, int(getattr(config, "gradient_accumulation_steps", 1) or 1))
        state = getattr(self, "state", None)
        steps = f", {state.max_steps} optimizer steps" if state is not None and state.max_steps else ""
        self.logger.info(
            "Running training: %s epochs%s, train batch size: %s, gradient accumulation steps: %s",
            getattr(config, "nb_training_epochs", "?"), steps, getattr(config, "batch_size", "?"),
            getattr(config, "gradient_accumulation_steps", "?"),
        )
        if self._bars_enabled():
            self._open_bar()

    def on_epoch_begin(self, epoch: int) -> None:
        if self._bar is not None:
            self._describe_bar(refresh=True)

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        value = metrics.get(self._metric)
        if isinstance(value, (int, float)) and not math.isnan(value):
            better = self._best is None or (value < self._best[0] if self._minimize else value > self._best[0])
            if better:
                self._best = (float(value), step)
        self.logger.info(self._evaluation_line(metrics, step))
        if self.full_metrics:
            train = self._history_entry().get("train")
            tables = [format_metrics_table("Training metrics", train),
                      format_metrics_table("Evaluation metrics", metrics)]
            self.logger.info("Metrics at step %d\n%s", step, "\n".join(t for t in tables if t))

    def on_epoch_end(self, metrics: dict[str, dict[str, float]], epoch: int, epoch_duration: float) -> None:
        state = getattr(self, "state", None)
        if state is not None and 0 < state.batch_in_epoch < state.nb_batches_per_epoch:
            # The run stopped inside the epoch (max_steps, early stopping, a signal): it did not end.
            self.logger.info("Epoch %d stopped after %d of its %d batches (duration: %.2fs)",
                             epoch, state.batch_in_epoch, state.nb_batches_per_epoch, epoch_duration)
        else:
            self.logger.info("Epoch %d ended (duration: %.2fs)", epoch, epoch_duration)

    def on_train_end(self) -> None:
        self._close_bars()
        best = ""
        if self._best is not None:
            best = f": best {self._metric} {_number(self._best[0])} at step {self._best[1]}"
        self.logger.info("Training is completed%s", best)

    def on_save(self, checkpoint_dir: str) -> None:
        self.logger.debug("Saving checkpoint in %s", checkpoint_dir)

    def on_log(self, logs: dict[str, float], step: int) -> None:
        self._loss = logs.get("loss", self._loss)
        self._samples_per_second = logs.get("samples_per_second", self._samples_per_second)
        self._stale_postfix = True

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if phase == "eval" and step_idx == 0 and self._bar is not None and self._eval_bar is None:
            from tqdm.auto import tqdm

            self._eval_bar = tqdm(total=nb_batches, desc="evaluating", unit="batch", leave=False,
                                  dynamic_ncols=True, position=1)

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if phase == "eval":
            if self._eval_bar is not None:
                self._eval_bar.update()
                if step_idx + 1 >= nb_batches:
                    self._eval_bar.close()
                    self._eval_bar = None
            return
        if self._bar is not None:
            self._advance_bar()

    def on_exception(self, exception: BaseException) -> None:
        self._close_bars()

    # ------------------------------------------------------------------ lines
    def _history_entry(self) -> dict[str, dict[str, float]]:
        state = getattr(self, "state", None)
        return state.history[-1] if state is not None and state.history else {}

    def _evaluation_line(self, metrics: dict[str, float], step: int) -> str:
        """``step 40/120 | epoch 2/3 | train loss 0.41 | eval loss 0.38 | f1 0.71 | best 0.73 (step 20)``."""
        state = getattr(self, "state", None)
        parts = [f"step {step}/{state.max_steps}" if state is not None and state.max_steps else f"step {step}"]
        if state is not None:
            parts.append(f"epoch {state.epoch}/{self._planned_epochs()}")
        train_loss = self._history_entry().get("train", {}).get("loss")
        if isinstance(train_loss, (int, float)):
            parts.append(f"train loss {train_loss:.4f}")
        if isinstance(metrics.get("loss"), (int, float)):
            parts.append(f"eval loss {metrics['loss']:.4f}")
        value = metrics.get(self._metric)
        if self._metric != "loss" and isinstance(value, (int, float)):
            parts.append(f"{self._metric} {_number(value)}")
        if self._best is not None:
            parts.append(f"best {self._metric} {_number(self._best[0])} (step {self._best[1]})")
        return "Evaluation: " + " | ".join(parts)

    def _planned_epochs(self) -> int | str:
        """The epochs the run will go through: its max_steps over the optimizer steps per epoch."""
        state = self.state
        if not state.nb_batches_per_epoch or not state.max_steps:
            return self._config_epochs or "?"
        steps_per_epoch = math.ceil(state.nb_batches_per_epoch / self._accumulation)
        return max(1, math.ceil(state.max_steps / steps_per_epoch))

    # ------------------------------------------------------------------ bars
    def _bars_enabled(self) -> bool:
        if self.progress_bar is not None:
            return self.progress_bar
        return sys.stderr.isatty()

    def _open_bar(self) -> None:
        """The whole run's bar, in optimizer steps, and log lines routed through tqdm.write so
        that they print above the bar instead of through it."""
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        state = getattr(self, "state", None)
        total = state.max_steps if state is not None and state.max_steps else None
        initial = state.global_step if state is not None else 0
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, position=0,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
                                    "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self._describe_bar()
        self._redirect = contextlib.ExitStack()
        # Our own logger only when it prints by itself (logging unconfigured), else it would print twice.
        loggers = [logging.getLogger(), *([self.logger] if self.logger.handlers else [])]
        levels = [_console_level(logger) for logger in loggers]
        self._redirect.enter_context(logging_redirect_tqdm(loggers))
        for logger, level in zip(loggers, levels):  # tqdm's handler keeps the filters, not the level
            logger.handlers[-1].setLevel(level)

    def _advance_bar(self) -> None:
        """Move the bar to the run's optimizer step. Its text is rebuilt only when what it shows
        changed (a log, a new epoch), not at every step: this runs once per batch."""
        state = getattr(self, "state", None)
        if state is None:
            self._bar.update()
            return
        done = state.global_step - self._bar.n
        if done > 0:
            if self._stale_postfix or state.epoch != self._bar_epoch:
                self._describe_bar()  # before the update, whose refresh then shows it
            self._bar.update(done)

    def _describe_bar(self, refresh: bool = False) -> None:
        state = getattr(self, "state", None)
        if state is not None and state.epoch:
            self._bar.set_description_str(f"epoch {state.epoch}/{self._planned_epochs()}", refresh=False)
            self._bar_epoch = state.epoch
        self._stale_postfix = False
        postfix = []
        if self._loss is not None:
            postfix.append(f"loss {self._loss:.4f}")
        if self._samples_per_second:
            postfix.append(f"{self._samples_per_second:.1f} samples/s")
        self._bar.set_postfix_str(", ".join(postfix), refresh=refresh)

    def _close_bars(self) -> None:
        if self._bar is not None and self._stale_postfix:
            self._describe_bar()  # the run's last log (at its last step) shows in the bar it leaves
        for name in ("_eval_bar", "_bar"):
            bar = getattr(self, name)
            if bar is not None:
                bar.close()
                setattr(self, name, None)
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
