"""The Trainer: medkit's training loop, read top to bottom, with callbacks for the rest.

``train()`` runs epochs; each is ``training_epoch()`` then, at its end, ``evaluation_epoch()``,
``update_learning_rate()``, ``on_epoch_end`` and a checkpoint, in medkit's order. Mid-epoch
evaluations (``eval_strategy="steps"``), stop/save requests and signals are handled after the
optimizer step that triggers them.

>>> trainer = Trainer(component, TrainerConfig(output_dir="run"), train_docs, dev_docs)  # doctest: +SKIP
>>> history = trainer.train()                                                      # doctest: +SKIP
>>> trainer.best_checkpoint                                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from medkit_exp.errors import ConfigError, DataError, NonFiniteLossError
from medkit_exp.training.batch import BatchData, EpochBatchSampler
from medkit_exp.training.callbacks import CallbackList, Timer, TrainerControl, TrainerState
from medkit_exp.training.printer import DefaultPrinterCallback
from medkit_exp.training.checkpoint import (
    CONFIG_NAME,
    OPTIMIZER_NAME,
    SCHEDULER_NAME,
    CheckpointManager,
    checkpoint_name,
    read_checkpoint,
    write_checkpoint,
)
from medkit_exp.training.component import check_trainable_component, exposed_model
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.history import HistoryFile
from medkit_exp.training.loading import item_lengths, make_loader, preprocess_items
from medkit_exp.training.memory import retain_freed_memory
from medkit_exp.training.optim import build_optimizer
from medkit_exp.training.schedulers import build_scheduler, is_plateau
from medkit_exp.training.seed import rng_states, seed_everything, set_rng_states, set_seed
from medkit_exp.training.signals import StopSignals
from medkit_exp.training.weights import check_finite_weights

# medkit's module exports these from ``medkit.training.trainer``.
__all__ = ["CONFIG_NAME", "OPTIMIZER_NAME", "SCHEDULER_NAME", "Trainer", "set_seed"]

logger = logging.getLogger(__name__)


class Trainer:
    """Trains a component: medkit's constructor, attributes and methods, plus checkpoints and resume.

    Parameters are medkit's: the component, a :class:`TrainerConfig`, training and evaluation
    data (sequences of items given to ``component.preprocess``; ``eval_data`` may be None or
    empty), an optional metrics computer, an optional ``lr_scheduler_builder(optimizer)`` and
    ``callback``: one callback, a list, or None for :class:`DefaultPrinterCallback`.
    """

    def __init__(
        self,
        component: Any,
        config: TrainerConfig,
        train_data: Any,
        eval_data: Any,
        metrics_computer: Any | None = None,
        lr_scheduler_builder: Callable[..., Any] | None = None,
        callback: Any | list[Any] | None = None,
    ):
        check_trainable_component(component)
        config.validate()
        if config.seed is not None:
            seed_everything(config.seed, config.deterministic)
        self.component = component
        self.config = config
        self.metrics_computer = metrics_computer
        self.device = component.device
        self.output_dir = Path(config.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # medkit's attributes
        self.batch_size = config.batch_size
        self.nb_training_epochs = config.nb_training_epochs
        self.dataloader_drop_last = False
        self.dataloader_nb_workers = config.dataloader_nb_workers
        self.dataloader_pin_memory = False
        self.callback = DefaultPrinterCallback() if callback is None else callback
        self.callbacks = CallbackList(self.callback if isinstance(self.callback, (list, tuple)) else [self.callback])

        self._build_dataloaders(train_data, eval_data)
        model = exposed_model(component)
        if config.compile:
            if model is None:
                raise ConfigError("compile", "needs a component that exposes its torch model as `model`")
            model.compile()
        self.lr_scheduler_builder = lr_scheduler_builder
        self.state = TrainerState(output_dir=str(self.output_dir), nb_batches_per_epoch=len(self.sampler))
        self.state.max_steps = self._planned_max_steps()
        self._build_optimization()
        self.control = TrainerControl()
        self.checkpoints = CheckpointManager(
            self.output_dir / "checkpoints", config.keep_best_k, config.minimize_checkpoint_metric
        )
        # Without a computer only "loss" exists; a computer may declare its names up front.
        known = [] if metrics_computer is None else getattr(metrics_computer, "metric_names", None)
        self._check_tracked_metrics(known)
        self.signals = StopSignals(config.handle_signals)
        self.history_file = HistoryFile(self.output_dir)
        self._reset_windows()
        self.callbacks.setup(self.state, self.control)  # the objects stay the same on resume

    # ------------------------------------------------------------------ data
    def _build_dataloaders(self, train_data: Any, eval_data: Any) -> None:
        config = self.config
        self.train_items = preprocess_items(self.component, train_data, "train_data", config.cache_preprocessed)
        if not self.train_items:
            raise DataError("train_data is empty: nothing to train on")
        self.eval_items = [] if eval_data is None else preprocess_items(
            self.component, eval_data, "eval_data", config.cache_preprocessed
        )
        if not self.eval_items and config.eval_strategy != "no":
            logger.warning("No evaluation data: no eval metrics; the last checkpoint is also the best")
        # The batch order of each epoch comes from this seed alone (resumable, see EpochBatchSampler).
        sampler_seed = config.seed if config.seed is not None else int(torch.randint(0, 2**31, ()).item())
        lengths = item_lengths(self.train_items) if config.group_by_length else None
        self.sampler = EpochBatchSampler(len(self.train_items), config.batch_size, True, sampler_seed, lengths)
        self.train_dataloader = make_loader(
            self.train_items, self.component, config.dataloader_nb_workers, batch_sampler=self.sampler
        )
        eval_batch_size = config.eval_batch_size or config.batch_size
        self.eval_dataloader = (
            make_loader(self.eval_items, self.component, config.dataloader_nb_workers, batch_size=eval_batch_size)
            if self.eval_items
            else None
        )

    def get_dataloader(self, data: Any, shuffle: bool) -> DataLoader:
        """medkit's: a DataLoader of ``data`` preprocessed and collated by the component (``batch_size``)."""
        items = preprocess_items(self.component, data, "data", self.config.cache_preprocessed)
        return make_loader(
            items, self.component, self.dataloader_nb_workers, batch_size=self.batch_size, shuffle=shuffle,
            drop_last=self.dataloader_drop_last, pin_memory=self.dataloader_pin_memory,
        )

    # ------------------------------------------------------------------ public API
    @property
    def best_checkpoint(self) -> str | None:
        return self.state.best_checkpoint

    @property
    def last_checkpoint(self) -> str | None:
        return self.state.last_checkpoint

    def train(self, resume_from_checkpoint: str | Path | None = None) -> list[dict[str, dict[str, float]]]:
        """Train (resuming from a checkpoint folder, "last" or "best") and return the history.

        The history has one ``{"train": ..., "eval": ...}`` entry per evaluation (per epoch by
        default, as medkit's).
        """
        if resume_from_checkpoint is None:
            self.checkpoints.check_new_run()  # never over an earlier run's checkpoints
            self.history_file.truncate(0)  # a new run starts a new history file
        else:
            self._resume(resume_from_checkpoint)  # nothing to resume from is an error, never a new run
        if self.config.retain_freed_memory:
            retain_freed_memory()
        with self.signals.installed():
            self.callbacks.call("on_train_begin", config=self.config)
            try:
                self._train_epochs()
            except BaseException as exception:
                self.callbacks.call("on_exception", exception=exception)
                raise
            self.callbacks.call("on_train_end")
        return self.state.history

    def _train_epochs(self) -> None:
        state = self.state
        while not self._finished():
            self._start_epoch_unless_started()
            self.callbacks.call("on_epoch_begin", epoch=state.epoch)
            epoch_timer = Timer()
            train_metrics = self.training_epoch()
            self._end_epoch(train_metrics, epoch_timer.elapsed())
        self._finish()

    def _finished(self) -> bool:
        state = self.state
        epochs_done = state.epoch >= self.config.nb_training_epochs and state.batch_in_epoch >= state.nb_batches_per_epoch
        return self.control.should_stop or state.global_step >= state.max_steps or epochs_done

    def _start_epoch_unless_started(self) -> None:
        """Move to the next epoch unless the current one has batches left (a resumed run's)."""
        state = self.state
        if state.epoch == 0 or state.batch_in_epoch >= state.nb_batches_per_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if self.config.eval_strategy == "epoch":
                # Training metrics are per epoch, as medkit's, also in a loop written by hand
                # around training_epoch() (train() has already recorded them at the epoch's end).
                self._eval_window = self._new_window()
                self._train_metric_data = defaultdict(list)

    # ------------------------------------------------------------------ one epoch
    def training_epoch(self) -> dict[str, float]:
        """medkit's: train on the (rest of the) current epoch and return its training metrics.

        The metrics (mean loss, and the computer's with ``do_metrics_in_training``) cover the
        batches since the last evaluation: the whole epoch with ``eval_strategy="epoch"``.
        Logs, mid-epoch evaluations, saves and stop requests happen after the optimizer step
        that triggers them; the epoch's own end is left to the caller.
        """
        config, state = self.config, self.state
        self._start_epoch_unless_started()  # called on its own, as medkit allows, it trains the next epoch
        self.sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
        batch_sizes = [len(batch) for batch in self.sampler.batches()]
        nb_batches, accumulation = state.nb_batches_per_epoch, config.gradient_accumulation_steps
        for input_batch in self.train_dataloader:
            step = state.batch_in_epoch
            self.callbacks.call("on_step_begin", step, nb_batches=nb_batches, phase="train")
            window_start = step - step % accumulation
            window_size = min(accumulation, nb_batches - window_start)  # windows never cross epochs
            self._train_batch(input_batch, window_size)
            self._log_window["samples"] += batch_sizes[step]
            state.batch_in_epoch += 1
            step_done = state.batch_in_epoch == window_start + window_size
            if step_done:
                self._optimizer_step()
            self.callbacks.call("on_step_end", step, nb_batches=nb_batches, phase="train")
            if step_done and self._after_step(epoch_ended=state.batch_in_epoch >= nb_batches):
                break
        return self._train_metrics()

    def evaluation_epoch(self, eval_dataloader: DataLoader) -> dict[str, float]:
        """medkit's: the mean loss and the metrics computer's metrics over ``eval_dataloader``."""
        total_loss, nb_batches = torch.zeros(()), len(eval_dataloader)
        metric_data: dict[str, list[Any]] = defaultdict(list)
        with torch.no_grad():
            for step, input_batch in enumerate(eval_dataloader):
                self.callbacks.call("on_step_begin", step, nb_batches=nb_batches, phase="eval")
                output, loss = self.make_forward_pass(input_batch, eval_mode=True)
                total_loss += loss.detach().float().cpu()
                if self.metrics_computer is not None:
                    for key, values in self.metrics_computer.prepare_batch(output, input_batch).items():
                        metric_data[key].extend(values)
                self.callbacks.call("on_step_end", step, nb_batches=nb_batches, phase="eval")
        metrics = {"loss": (total_loss / max(nb_batches, 1)).item()}
        if self.metrics_computer is not None:
            metrics.update(self.metrics_computer.compute(dict(metric_data)))
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_data`` now and return the metrics ({} without eval data)."""
        return {} if self.eval_dataloader is None else self.evaluation_epoch(self.eval_dataloader)

    def make_forward_pass(self, inputs: BatchData, eval_mode: bool) -> tuple[BatchData, torch.Tensor]:
        """medkit's: ``component.forward`` on the component's device (under autocast if configured)."""
        inputs = inputs.to_device(self.device)
        with self._autocast():
            output, loss = self.component.forward(inputs, return_loss=True, eval_mode=eval_mode)
        if loss is None:
            raise ValueError("The component did not return a 'loss' from the input.")
        return output, loss

    def update_learning_rate(self, eval_metrics: dict[str, float]) -> None:
        """medkit's: step ``ReduceLROnPlateau`` on ``metric_to_track_lr``, any other scheduler once.

        The loop calls it after each evaluation for ``ReduceLROnPlateau`` and at each epoch end
        for schedulers stepped per epoch; schedulers stepped per optimizer step are stepped there.
        """
        if self.lr_scheduler is None:
            return
        if not is_plateau(self.lr_scheduler):
            self.lr_scheduler.step()
            return
        name = self.config.metric_to_track_lr
        if name not in eval_metrics:
            raise ConfigError(
                "metric_to_track_lr", f"available: {', '.join(sorted(eval_metrics))}",
                lead=f"Learning scheduler needs an eval metric to update the learning rate, '{name}' was not found",
            )
        self.lr_scheduler.step(eval_metrics[name])

    def save(self, epoch: int | None = None) -> str:
        """medkit's: save a checkpoint of the current state now and return its folder.

        Our checkpoints are named after the optimizer step (``checkpoint-0000120``) under
        ``output_dir/checkpoints/``; ``epoch``, medkit's argument, must be the current epoch.
        """
        if epoch is not None and epoch != self.state.epoch:
            raise ValueError(f"save(epoch={epoch}): the trainer is at epoch {self.state.epoch}")
        evaluated_now = self.state.last_eval_step == self.state.global_step and self.state.history
        metric = self._tracked_metric(self.state.history[-1]["eval"]) if evaluated_now else None
        return str(self._save_checkpoint(metric))

    # ------------------------------------------------------------------ steps
    def _train_batch(self, input_batch: BatchData, window_size: int) -> None:
        output, loss = self.make_forward_pass(input_batch, eval_mode=False)
        loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            state = self.state
            if self.config.on_nonfinite_loss == "error":
                raise NonFiniteLossError(state.global_step + 1, state.epoch, state.batch_in_epoch, loss_value.item())
            self._skipped_batches += 1
            logger.warning("Skipping batch %d of epoch %d: non-finite loss", state.batch_in_epoch, state.epoch)
            return
        scaled = loss / window_size
        (self.grad_scaler.scale(scaled) if self.grad_scaler else scaled).backward()
        for window in (self._log_window, self._eval_window):
            window["loss"] += loss_value.float()
            window["batches"] += 1
        if self.config.do_metrics_in_training and self.metrics_computer is not None:
            for key, values in self.metrics_computer.prepare_batch(output, input_batch).items():
                self._train_metric_data[key].extend(values)

    def _optimizer_step(self) -> None:
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
        log_due = (self.state.global_step + 1) % self.config.logging_steps == 0
        if self.config.max_grad_norm is not None:
            self._grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
        elif log_due:
            self._grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        if self._scheduler_stepped_per("step"):
            self.lr_scheduler.step()

    def _after_step(self, epoch_ended: bool) -> bool:
        """Logs, and mid-epoch evaluations and saves, due after an optimizer step; True to leave the epoch.

        At the epoch's last step only the log happens here: ``_end_epoch`` does the rest in
        medkit's order. The checkpoint is the last thing that changes state at a step, so a
        run resumed from it continues exactly as the original would have.
        """
        config, state, control = self.config, self.state, self.control
        if state.global_step % config.logging_steps == 0:
            self._log()
        if self.signals.received:
            state.interrupted = True
            control.request_stop(self.signals.received)
        if epoch_ended:
            return True
        evaluated = False
        if self._eval_due_by_steps() or control.should_evaluate:
            self._evaluate(self._train_metrics())
            evaluated = True
        if self._save_due(evaluated):
            self.save()
        control.should_evaluate = control.should_save = False
        return control.should_stop or state.global_step >= state.max_steps

    def _end_epoch(self, train_metrics: dict[str, float], duration: float) -> None:
        """The end of an epoch (or of training inside one): evaluation, learning rate, on_epoch_end, checkpoint."""
        state, control = self.state, self.control
        complete = state.batch_in_epoch >= state.nb_batches_per_epoch
        last = self._finished()
        evaluated = state.last_eval_step == state.global_step and state.nb_evaluations > 0
        if not evaluated and self._eval_due_at_epoch_end(complete, last):
            self._evaluate(train_metrics)
            evaluated = True
        elif not evaluated and last and not state.interrupted:
            self._record_history(train_metrics, {})  # eval_strategy="no": the run still ends with an entry
        if complete and self._scheduler_stepped_per("epoch"):
            self.update_learning_rate(state.history[-1]["eval"] if evaluated else {})
        metrics = state.history[-1] if state.history else {"train": train_metrics, "eval": {}}
        self.callbacks.call("on_epoch_end", metrics=metrics, epoch=state.epoch, epoch_duration=duration)
        saved_now = state.last_checkpoint is not None and Path(state.last_checkpoint).name == checkpoint_name(state.global_step)
        if not saved_now and (self._save_due(evaluated) or self._finished()):
            self.save()
        control.should_evaluate = control.should_save = False

    def _finish(self) -> None:
        state = self.state
        state.stop_reason = self.control.stop_reason
        if self.control.should_stop:
            logger.info("Training stopped at step %d: %s", state.global_step, state.stop_reason)
        if self._skipped_batches:
            logger.warning("%d batches were skipped for a non-finite loss", self._skipped_batches)

    def _eval_due_by_steps(self) -> bool:
        config = self.config
        return config.eval_strategy == "steps" and self.state.global_step % config.eval_steps == 0

    def _eval_due_at_epoch_end(self, complete: bool, last: bool) -> bool:
        if self.config.eval_strategy == "no":
            return self.control.should_evaluate
        if self.state.interrupted:  # a signal: evaluate only if this step was due anyway
            return (complete and self.config.eval_strategy == "epoch") or self._eval_due_by_steps()
        due = (complete and self.config.eval_strategy == "epoch") or self._eval_due_by_steps()
        return due or last or self.control.should_evaluate

    def _save_due(self, evaluated: bool) -> bool:
        period = self.config.checkpoint_period
        by_period = evaluated and period > 0 and self.state.nb_evaluations % period == 0
        return by_period or self.control.should_save or self.state.interrupted

    def _scheduler_stepped_per(self, interval: str) -> bool:
        return (
            self.lr_scheduler is not None
            and not is_plateau(self.lr_scheduler)
            and self.scheduler_interval == interval
        )

    # ------------------------------------------------------------------ logging and evaluation
    def _log(self) -> None:
        window, elapsed = self._log_window, self._log_timer.elapsed()
        logs = {
            "loss": (window["loss"] / window["batches"]).item() if window["batches"] else float("nan"),
            "learning_rate": self._step_lr,
            "epoch": self.state.epoch - 1 + self.state.batch_in_epoch / self.state.nb_batches_per_epoch,
            "samples_per_second": window["samples"] / elapsed if elapsed > 0 else 0.0,
            "steps_per_second": self.config.logging_steps / elapsed if elapsed > 0 else 0.0,
        }
        if self._grad_norm is not None:
            logs["grad_norm"] = float(self._grad_norm)
        self.history_file.append({"type": "log", "step": self.state.global_step, **logs})
        self.callbacks.call("on_log", logs=logs, step=self.state.global_step)
        self._log_window = self._new_window()
        self._log_timer.reset()

    def _train_metrics(self) -> dict[str, float]:
        """Training metrics since the last evaluation."""
        window = self._eval_window
        metrics = {"loss": (window["loss"] / window["batches"]).item()} if window["batches"] else {}
        if self.config.do_metrics_in_training and self.metrics_computer is not None and self._train_metric_data:
            metrics.update(self.metrics_computer.compute(dict(self._train_metric_data)))
        return metrics

    def _evaluate(self, train_metrics: dict[str, float]) -> dict[str, float]:
        """Evaluate, record the history entry, tell the callbacks, step a plateau scheduler."""
        eval_metrics = self.evaluate()
        self._record_history(train_metrics, eval_metrics)
        self.callbacks.call("on_evaluate", metrics=eval_metrics, step=self.state.global_step)
        if eval_metrics:
            self._tracked_metric(eval_metrics)  # fails naming the metric before any checkpoint
            if is_plateau(self.lr_scheduler):
                self.update_learning_rate(eval_metrics)
        return eval_metrics

    def _record_history(self, train_metrics: dict[str, float], eval_metrics: dict[str, float]) -> None:
        entry = {"train": train_metrics, "eval": eval_metrics}
        state = self.state
        state.history.append(entry)
        state.nb_evaluations += 1
        state.last_eval_step = state.global_step
        self.history_file.append({"type": "eval", "step": state.global_step, "epoch": state.epoch, **entry})
        self._eval_window = self._new_window()
        self._train_metric_data = defaultdict(list)

    def _tracked_metric(self, eval_metrics: dict[str, float]) -> float | None:
        """The checkpoint metric, failing with medkit's message and the available names if absent."""
        if not eval_metrics:
            return None
        self._check_tracked_metrics(list(eval_metrics))
        return float(eval_metrics[self.config.checkpoint_metric])

    def _check_tracked_metrics(self, available: list[str] | None) -> None:
        if available is None:
            return  # unknown before the first evaluation; checked then, before any checkpoint
        available = sorted({"loss", *available})
        config = self.config
        wanted = {"checkpoint_metric": (config.checkpoint_metric, f"Checkpoint metric '{config.checkpoint_metric}' not found")}
        if is_plateau(self.lr_scheduler):
            wanted["metric_to_track_lr"] = (
                config.metric_to_track_lr,
                "Learning scheduler needs an eval metric to update the learning rate, "
                f"'{config.metric_to_track_lr}' was not found",
            )
        for cb in self.callbacks.callbacks:
            if isinstance(getattr(cb, "monitor", None), str):
                wanted[f"{type(cb).__name__}.metric"] = (cb.monitor, f"Early stopping metric '{cb.monitor}' not found")
        for key, (name, lead) in wanted.items():
            if name not in available:
                raise ConfigError(key, f"eval metric {name!r} is never produced; available: {', '.join(available)}", lead=lead)

    # ------------------------------------------------------------------ checkpoints and resume
    def _save_checkpoint(self, metric: float | None) -> Path:
        if not self.eval_items and self.config.eval_strategy != "no":
            metric = None
        path = self.checkpoints.save(self.state.global_step, metric, self._write_checkpoint)
        state = self.state
        state.last_checkpoint = str(path)
        best = self.checkpoints.path(self.checkpoints.best) or path
        state.best_checkpoint = str(best)
        best_record = next((r for r in self.checkpoints.records if r.name == best.name), None)
        state.best_metric = best_record.metric if best_record else None
        self.callbacks.call("on_save", checkpoint_dir=str(path))
        return path

    def _write_checkpoint(self, folder: Path) -> None:
        self.component.save(folder)
        trainer_state = {
            "state": self.state.to_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "sampler_seed": self.sampler.seed,
            "windows": {"eval": self._eval_window, "log": self._log_window, "train_metric_data": dict(self._train_metric_data)},
            "history_lines": self.history_file.nb_lines,
            "callbacks": self.callbacks.state_dicts(),
            "skipped_batches": self._skipped_batches,
            "rng": rng_states(),
        }
        write_checkpoint(folder, trainer_state, self.config.to_dict(), self.optimizer, self.lr_scheduler)

    def _resume(self, which: str | Path) -> None:
        """Restore everything from a checkpoint ("last", "best" or a folder), its digests verified;
        nothing to resume from, a damaged file or weights that are not finite are a CheckpointError."""
        path = self.checkpoints.resolve(which)
        payload = read_checkpoint(path)
        logger.info("Resuming from %s (step %d)", path, payload["state"]["global_step"])
        self.component.load(path)
        check_finite_weights(exposed_model(self.component), path)
        self._build_optimization()  # load() may have replaced the model and its parameters
        self.optimizer.load_state_dict(payload["optimizer"])
        if (self.lr_scheduler is None) != (payload["lr_scheduler"] is None):
            logger.warning(
                "Resuming %s a learning-rate scheduler from a checkpoint saved %s one: the schedule restarts",
                "without" if self.lr_scheduler is None else "with", "with" if self.lr_scheduler is None else "without",
            )
        elif self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(payload["lr_scheduler"])
        if self.grad_scaler is not None and payload["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(payload["grad_scaler"])
        for key, value in payload["state"].items():
            setattr(self.state, key, value)
        self.state.output_dir, self.state.max_steps = str(self.output_dir), self._planned_max_steps()
        self.state.stop_reason, self.state.interrupted = None, False
        self.sampler.seed = payload["sampler_seed"]
        windows = payload["windows"]
        for window in (windows["eval"], windows["log"]):
            window["loss"] = window["loss"].to(self.device)
        self._eval_window, self._log_window = windows["eval"], windows["log"]
        self._train_metric_data = defaultdict(list, windows["train_metric_data"])
        self._skipped_batches = payload["skipped_batches"]
        self.history_file.truncate(payload["history_lines"])
        self.callbacks.load_state_dicts(payload["callbacks"])
        set_rng_states(payload["rng"])

    def _planned_max_steps(self) -> int:
        steps_per_epoch = math.ceil(len(self.sampler) / self.config.gradient_accumulation_steps)
        total = steps_per_epoch * self.config.nb_training_epochs
        return total if self.config.max_steps is None else min(total, self.config.max_steps)

    # ------------------------------------------------------------------ construction helpers
    def _build_optimization(self) -> None:
        config = self.config
        self.optimizer = build_optimizer(self.component, config.learning_rate, config.weight_decay)
        builder = self.lr_scheduler_builder
        self.lr_scheduler = build_scheduler(builder, self.optimizer, self.state.max_steps)
        self.scheduler_interval = config.lr_scheduler_interval or getattr(builder, "interval", "epoch")
        self.grad_scaler = None
        if str(config.precision) == "fp16":
            if self.device.type != "cuda":
                raise ConfigError("precision", "fp16 needs a CUDA device; use bf16 on CPU")
            self.grad_scaler = torch.amp.GradScaler("cuda")

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = str(self.config.precision)
        if precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _new_window(self) -> dict[str, Any]:
        """Running sums of a logging or evaluation window (the loss stays on the device: no sync)."""
        return {"loss": torch.zeros((), device=self.device), "batches": 0, "samples": 0}

    def _reset_windows(self) -> None:
        self._log_window = self._new_window()
        self._eval_window = self._new_window()
        self._train_metric_data: dict[str, list[Any]] = defaultdict(list)
        self._log_timer = Timer()
        self._grad_norm: torch.Tensor | None = None
        self._step_lr = self.optimizer.param_groups[0]["lr"]
        self._skipped_batches = 0
