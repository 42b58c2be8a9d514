"""The default printer: what a run shows in the terminal and in its log (start, evaluations,
saves, end) and its progress bars."""

from __future__ import annotations

import logging
import sys
from typing import Any

from medkit_exp.training.callbacks import TrainerCallback

__all__ = ["DefaultPrinterCallback"]


def _format_metrics(title: str, metrics: dict[str, float] | None) -> str:
    if not metrics:
        return ""
    lines = "\n ".join(f"{key}:{value:8.3f}" for key, value in metrics.items() if isinstance(value, (int, float)))
    return f"{title}:\n {lines}\n"


class DefaultPrinterCallback(TrainerCallback):
    """Logs the run like medkit's printer (start, epoch metrics, saves, end) and shows progress bars.

    Progress bars (tqdm) show steps, the running loss and throughput; they are off when stderr
    is not a terminal (``progress_bar=None``), or forced on/off with ``True``/``False``.
    """

    def __init__(self, progress_bar: bool | None = None):
        self.logger = logging.getLogger("DefaultPrinterCallback")
        if not self.logger.handlers and not logging.getLogger().handlers:
            # Used from plain Python with logging unconfigured: print like medkit's printer does.
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
        self.progress_bar = progress_bar
        self._bar: Any = None
        self._last_loss: float | None = None

    def on_train_begin(self, config: Any) -> None:
        self.logger.info(
            "Running training:\n\tNum epochs: %s\n\tTrain batch size:%s\n\tGradient accum steps: %s\n",
            getattr(config, "nb_training_epochs", "?"),
            getattr(config, "batch_size", "?"),
            getattr(config, "gradient_accumulation_steps", "?"),
        )

    def on_epoch_end(self, metrics: dict[str, dict[str, float]], epoch: int, epoch_duration: float) -> None:
        message = f"Epoch {epoch} ended (duration: {epoch_duration:.2f}s)\n"
        message += _format_metrics("Training metrics", metrics.get("train"))
        message += _format_metrics("Evaluation metrics", metrics.get("eval"))
        self.logger.info(message)

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        self.logger.debug("Evaluation at step %d: %s", step, metrics)

    def on_train_end(self) -> None:
        self._close_bar()
        self.logger.info("Training is completed")

    def on_save(self, checkpoint_dir: str) -> None:
        self.logger.info("Saving checkpoint in %s", checkpoint_dir)

    def on_log(self, logs: dict[str, float], step: int) -> None:
        self._last_loss = logs.get("loss")

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if self._bar is None and self._bars_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=nb_batches, initial=step_idx, desc=phase, unit="batch", leave=False, dynamic_ncols=True)

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if self._bar is None:
            return
        self._bar.update()
        if phase == "train" and self._last_loss is not None and self._bar.n % 10 == 0:
            self._bar.set_postfix(loss=f"{self._last_loss:.4f}", refresh=False)
        if step_idx + 1 >= nb_batches:
            self._close_bar()

    def on_exception(self, exception: BaseException) -> None:
        self._close_bar()

    def _bars_enabled(self) -> bool:
        if self.progress_bar is not None:
            return self.progress_bar
        return sys.stderr.isatty()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
