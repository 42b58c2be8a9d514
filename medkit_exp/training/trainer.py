"""The Trainer: medkit's training loop written as a recipe, read top to bottom.

``train()`` runs the epochs. Each epoch is medkit's ``training_epoch()`` (batches, gradient
accumulation, optimizer steps, logs, mid-epoch evaluations and saves), then its end in
medkit's order: evaluation (``evaluation_epoch()``), ``update_learning_rate()``,
``on_epoch_end`` and a checkpoint. Callbacks observe a read-only state and steer the loop
through :class:`TrainerControl`; their requests, and SIGTERM/SIGINT, are honoured after the
optimizer step that makes them. The helpers below the loop each do one leaf job.

>>> history = Trainer(component, TrainerConfig(output_dir="run"), train_docs, dev_docs).train()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medkit_exp.errors import NonFiniteLossError
from medkit_exp.training import data_parallel, distributed, rank_zero, shards
from medkit_exp.training.batch import BatchData
from medkit_exp.training.callbacks import Timer
from medkit_exp.training.checkpoint import CONFIG_NAME, OPTIMIZER_NAME, SCHEDULER_NAME  # medkit's names
from medkit_exp.training.checkpoint import CheckpointManager, write_checkpoint
from medkit_exp.training.component import TrainableComponent, check_trainable_component, compile_exposed_model
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.due import Due
from medkit_exp.training.events import CallbackList, TrainerCallback, TrainerControl, TrainerState
from medkit_exp.training.loading import build_training_data, make_loader, preprocess_items
from medkit_exp.training.memory import retain_freed_memory
from medkit_exp.training.metrics import MetricsComputer, declared_metric_names
from medkit_exp.training.optim import OptimizerStep, build_optimizer, optimizer_step
from medkit_exp.training.precision import autocast, describe_precision, grad_scaler, resolve_precision
from medkit_exp.training.printer import DefaultPrinterCallback
from medkit_exp.training.resume import resume_trainer, trainer_payload
from medkit_exp.training.running_mean import Windows
from medkit_exp.training.schedulers import SchedulerBuilder, build_scheduler, is_plateau, scheduler_interval
from medkit_exp.training.seed import seed_everything, set_seed
from medkit_exp.training.signals import StopSignals
from medkit_exp.training.threads import use_threads

# medkit's module exports these from ``medkit.training.trainer``.
__all__ = ["CONFIG_NAME", "OPTIMIZER_NAME", "SCHEDULER_NAME", "Trainer", "set_seed"]

logger = logging.getLogger(__name__)

History = list[dict[str, dict[str, float]]]


class Trainer:
    """Trains a component: medkit's constructor, attributes and methods, plus checkpoints and resume.

    Parameters are medkit's: the component, a :class:`TrainerConfig`, training and evaluation
    data (sequences of items given to ``component.preprocess``; ``eval_data`` may be None or
    empty), an optional metrics computer, an optional ``lr_scheduler_builder(optimizer)`` and
    ``callback``: one callback, a list, or None for :class:`DefaultPrinterCallback` (medkit's
    callbacks need no base class: any object with some of the event methods works).
    """

    def __init__(
        self, component: TrainableComponent, config: TrainerConfig, train_data: Sequence[Any],
        eval_data: Sequence[Any] | None, metrics_computer: MetricsComputer | None = None,
        lr_scheduler_builder: SchedulerBuilder | None = None,
        callback: TrainerCallback | Sequence[TrainerCallback] | None = None,
    ):
        check_trainable_component(component)
        config.validate()
        self.distributed = distributed.init_from_env(config.distributed_backend, config.distributed_timeout_s)
        if config.num_threads is not None:  # None leaves torch as it is; the app sets it before the model loads
            use_threads(config.num_threads)
        if config.seed is not None:
            seed_everything(config.seed, config.deterministic)
        self.component, self.config, self.metrics_computer = component, config, metrics_computer
        self.train_metrics_computer = metrics_computer if config.do_metrics_in_training else None
        self.device, self.output_dir = component.device, Path(config.output_dir)
        self.precision = resolve_precision(str(config.precision), self.device)  # "auto" made concrete
        if str(config.precision) == "auto":
            logger.info(describe_precision("auto", self.device))
        rank_zero.make_run_folder(self.distributed, self.output_dir)  # rank 0 is the one writer
        self._set_medkit_attributes(callback)
        data = build_training_data(component, config, train_data, eval_data)
        data = shards.shard_training_data(data, component, config, self.distributed)  # global batches in shares
        self.train_items, self.eval_items, self.sampler = data.train_items, data.eval_items, data.sampler
        self.train_dataloader, self.eval_dataloader = data.train_dataloader, data.eval_dataloader
        if config.compile:
            compile_exposed_model(component)
        self.lr_scheduler_builder = lr_scheduler_builder
        nb_batches = len(self.sampler)
        self.state = TrainerState(str(self.output_dir), nb_batches_per_epoch=nb_batches,
                                  max_steps=config.optimizer_steps(nb_batches), precision=self.precision)
        self.build_optimization()
        self.global_batch_size = distributed.global_batch(self.distributed, config)
        self.loss_shares = shards.LossShares(self.distributed, component)
        self.control = TrainerControl()
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", config.keep_best_k,
                                             config.minimize_checkpoint_metric)
        self.due = Due(config, self.state, self.control)
        self._check_metric_names(declared_metric_names(metrics_computer))
        self.signals = StopSignals(config.handle_signals)
        self.history_file = rank_zero.history_file(self.distributed, self.output_dir)  # rank 0's; none elsewhere
        self.windows = Windows(self.device)  # what accumulates between two logs, two evaluations
        self.skipped_batches = 0  # batches whose loss was not finite (on_nonfinite_loss="skip")
        self.callbacks.setup(self.state, self.control)  # the same objects after a resume

    # ------------------------------------------------------------------ the loop
    def train(self, resume_from_checkpoint: str | Path | None = None) -> History:
        """Train (resuming from a checkpoint folder, "last" or "best") and return the history: one
        ``{"train": ..., "eval": ...}`` entry per evaluation (per epoch by default, as medkit's)."""
        state, control = self.state, self.control
        self._start_or_resume(resume_from_checkpoint)
        with self.signals.installed(), distributed.left_at_end(self.distributed):
            self.callbacks.call("on_train_begin", config=self.config)
            try:
                first_epoch = state.epoch if self.due.in_epoch() else state.epoch + 1  # a resumed run's, or the next
                for epoch in range(first_epoch, self.config.nb_training_epochs + 1):
                    if self.due.finished():
                        break
                    self._enter_epoch(epoch)
                    self.callbacks.call("on_epoch_begin", epoch=epoch)
                    epoch_timer = Timer()
                    train_metrics = self.training_epoch()  # batches, accumulation, steps, logs, mid-epoch evaluations
                    # The epoch's end (or the run's, inside it), in medkit's order: evaluation,
                    # learning rate, on_epoch_end, checkpoint.
                    complete = state.batch_in_epoch >= state.nb_batches_per_epoch
                    evaluated = state.nb_evaluations > 0 and state.last_eval_step == state.global_step
                    if not evaluated and self.due.eval_at_epoch_end(complete):
                        self._evaluate(train_metrics)
                        evaluated = True
                    elif not evaluated and self.due.finished() and not state.interrupted:
                        self._record_history(train_metrics, {})  # no evaluation: the run still ends with an entry
                    if complete and self.scheduler_interval == "epoch":
                        self.update_learning_rate(state.history[-1]["eval"] if evaluated else {})
                    metrics = state.history[-1] if state.history else {"train": train_metrics, "eval": {}}
                    self.callbacks.call("on_epoch_end", metrics=metrics, epoch=state.epoch,
                                        epoch_duration=epoch_timer.elapsed())
                    rank_zero.agree_control(self.distributed, control, self.signals)  # rank 0's callbacks
                    if not self.due.saved_at_this_step() and (self.due.save(evaluated) or self.due.finished()):
                        self.save()
                    control.clear_requests()
                self._report_stop()
            except BaseException as exception:
                self.callbacks.call("on_exception", exception=exception)
                raise
            self.callbacks.call("on_train_end")
        return state.history

    def training_epoch(self) -> dict[str, float]:
        """medkit's: train on the (rest of the) current epoch and return its training metrics.

        Called on its own, as medkit allows, it trains the next epoch. The metrics (mean loss,
        and the computer's with ``do_metrics_in_training``) cover the batches since the last
        evaluation: the whole epoch with ``eval_strategy="epoch"``. Logs, mid-epoch evaluations,
        saves and stop requests come after the optimizer step that makes them due; the epoch's
        own end is left to the caller.
        """
        state, config, control = self.state, self.config, self.control
        if not self.due.in_epoch():
            self._enter_epoch(state.epoch + 1)
        self.sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
        batch_sizes = self.loss_shares.set_epoch_batches(self.sampler.batches())  # global batches
        nb_batches, accumulation = state.nb_batches_per_epoch, config.gradient_accumulation_steps
        for input_batch in self.train_dataloader:
            index = state.batch_in_epoch
            self.callbacks.call("on_step_begin", index, nb_batches=nb_batches, phase="train")
            # Gradient accumulation over windows of `accumulation` micro-batches that never cross
            # an epoch's end; the optimizer steps after a window's last micro-batch.
            window_start = index - index % accumulation
            window_size = min(accumulation, nb_batches - window_start)
            last_of_window = index + 1 == window_start + window_size
            output, loss = self._forward_backward(input_batch, window_size, last_of_window, index)
            if loss is not None:  # None: a non-finite loss, skipped
                self.windows.log_loss.add(loss)
                self.windows.train_loss.add(loss)
                if self.train_metrics_computer is not None:
                    prepared = self.train_metrics_computer.prepare_batch(output, input_batch)
                    self.windows.train_inputs.add(self.loss_shares.gather_inputs(prepared, index))
                self.windows.throughput.add(batch_sizes[index])  # samples trained: a skipped batch is not
            state.batch_in_epoch += 1
            log_due = last_of_window and (state.global_step + 1) % config.logging_steps == 0
            step = self._optimizer_step(measure_grad_norm=log_due) if last_of_window else None
            self.callbacks.call("on_step_end", index, nb_batches=nb_batches, phase="train")
            if step is None:
                continue
            if log_due:
                self._log(step)
            self._check_signals()
            if state.batch_in_epoch >= nb_batches:
                break  # the epoch's end: its evaluation and checkpoint follow, in train()
            evaluated = self.due.eval_by_steps() or control.should_evaluate
            if evaluated:
                self._evaluate(self.windows.train_metrics(self.train_metrics_computer))
            if self.due.save(evaluated):
                self.save()
            control.clear_requests()
            if control.should_stop or state.global_step >= state.max_steps:
                break
        return self.windows.train_metrics(self.train_metrics_computer)

    def evaluation_epoch(self, eval_dataloader: DataLoader) -> dict[str, float]:
        """medkit's: the mean loss and the metrics computer's metrics over ``eval_dataloader``."""
        results, nb_batches = shards.EvalResults(self, eval_dataloader), len(eval_dataloader)
        with torch.no_grad():
            for index, input_batch in enumerate(eval_dataloader):
                self.callbacks.call("on_step_begin", index, nb_batches=nb_batches, phase="eval")
                output, batch_loss = self.make_forward_pass(input_batch, eval_mode=True)
                results.add(index, input_batch, output, batch_loss)
                self.callbacks.call("on_step_end", index, nb_batches=nb_batches, phase="eval")
        return results.metrics()  # under torchrun: every rank's shards, gathered in the single-process order

    # ------------------------------------------------------------------ medkit's other methods
    def get_dataloader(self, data: Sequence[Any], shuffle: bool) -> DataLoader:
        """medkit's: a DataLoader of ``data`` preprocessed and collated by the component (``batch_size``)."""
        items = preprocess_items(self.component, data, "data", self.config.cache_preprocessed)
        return make_loader(
            items, self.component, self.dataloader_nb_workers, batch_size=self.batch_size, shuffle=shuffle,
            drop_last=self.dataloader_drop_last, pin_memory=self.dataloader_pin_memory,
        )

    def make_forward_pass(self, inputs: BatchData, eval_mode: bool) -> tuple[BatchData, torch.Tensor]:
        """medkit's: ``component.forward`` on the component's device (under autocast if configured)."""
        inputs = inputs.to_device(self.device)
        with autocast(self.precision, self.device):
            output, loss = self.component.forward(inputs, return_loss=True, eval_mode=eval_mode)
        if loss is None:
            raise ValueError("The component did not return a 'loss' from the input.")
        return output, loss

    def update_learning_rate(self, eval_metrics: dict[str, float]) -> None:
        """medkit's: step ``ReduceLROnPlateau`` on ``metric_to_track_lr``, any other scheduler once
        (the loop calls it after each evaluation for the first, at each epoch's end for the others
        stepped per epoch)."""
        if self.lr_scheduler is None:
            return
        if not is_plateau(self.lr_scheduler):
            self.lr_scheduler.step()
            return
        self.lr_scheduler.step(self.config.plateau_metric(eval_metrics))

    def save(self, epoch: int | None = None) -> str:
        """medkit's: save a checkpoint of the current state now and return its folder.

        Our checkpoints are named after the optimizer step (``checkpoint-0000120``) under
        ``output_dir/checkpoints/``; ``epoch``, medkit's argument, must be the current epoch.
        """
        state = self.state
        if epoch is not None and epoch != state.epoch:
            raise ValueError(f"save(epoch={epoch}): the trainer is at epoch {state.epoch}")
        eval_metrics = state.history[-1]["eval"] if state.history and state.last_eval_step == state.global_step else {}
        self._check_metric_names(list(eval_metrics) if eval_metrics else None)  # before any checkpoint
        metric = float(eval_metrics[self.config.checkpoint_metric]) if eval_metrics else None
        self._rank_states = rank_zero.rank_states(self.distributed)  # every rank's random states, for rank 0
        path = self.distributed.main_decides(self.checkpoints.save, state.global_step, metric, self._write_checkpoint)
        best, state.best_metric = self.distributed.main_decides(self.checkpoints.best_or_last)
        state.last_checkpoint, state.best_checkpoint = str(path), str(best)
        self.callbacks.call("on_save", checkpoint_dir=str(path))
        return str(path)

    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_data`` now and return the metrics ({} without eval data)."""
        return {} if self.eval_dataloader is None else self.evaluation_epoch(self.eval_dataloader)

    @property
    def best_checkpoint(self) -> str | None:
        return self.state.best_checkpoint

    @property
    def last_checkpoint(self) -> str | None:
        return self.state.last_checkpoint

    # ------------------------------------------------------------------ leaf operations of a step
    def _forward_backward(self, input_batch: BatchData, window_size: int, last_of_window: bool,
                          index: int) -> tuple[BatchData, torch.Tensor | None]:
        """Forward, then backward of the loss / its accumulation window's size (x this rank's share of the
        global batch). Returns the output and the global batch's loss (None: not finite, skipped)."""
        with self.gradient_sync.forward(sync=last_of_window):  # DDP reduces in the window's last backward
            output, loss = self.make_forward_pass(input_batch, eval_mode=False)
        batch_loss, weight = self.loss_shares.weigh(loss.detach(), input_batch, index)
        if batch_loss is None:
            state = self.state
            if self.config.on_nonfinite_loss == "error":
                raise NonFiniteLossError(state.global_step + 1, state.epoch, state.batch_in_epoch, loss.item())
            self.gradient_sync.discard_backward(loss, last_of_window)
            self.skipped_batches += 1
            logger.warning("Skipping batch %d of epoch %d: non-finite loss", state.batch_in_epoch, state.epoch)
            return output, None
        if weight == 1.0:
            # No division by a window of one: x / 1 is x, and its gradient too, without an op and its
            # autograd node at every step.
            scaled = loss if window_size == 1 else loss / window_size
        else:
            scaled = loss * (weight / window_size)
        (scaled if self.grad_scaler is None else self.grad_scaler.scale(scaled)).backward()
        return output, batch_loss

    def _optimizer_step(self, measure_grad_norm: bool) -> OptimizerStep:
        """The optimizer step (clipped, fp16-scaled), counted, then a per-step scheduler's."""
        self.gradient_sync.average_gradients()  # what DDP did not average: the same gradients on every rank
        step = optimizer_step(self.optimizer, self.grad_scaler, self.config.max_grad_norm, measure_grad_norm)
        self.state.global_step += 1
        if self.scheduler_interval == "step":
            self.lr_scheduler.step()
        return step

    def _log(self, step: OptimizerStep) -> None:
        """A log line (history and ``on_log``): mean loss, learning rate, epoch, throughput, gradient norm."""
        state = self.state
        epoch = state.epoch - 1 + state.batch_in_epoch / state.nb_batches_per_epoch
        logs = self.windows.take_log(step.learning_rate, epoch, self.config.logging_steps, step.grad_norm)
        self.history_file.append({"type": "log", "step": state.global_step, **logs})
        self.callbacks.call("on_log", logs=logs, step=state.global_step)

    def _check_signals(self) -> None:
        """After a SIGTERM/SIGINT, stop after this step with a checkpoint (``state.interrupted``)."""
        rank_zero.agree_control(self.distributed, self.control, self.signals)  # every rank, rank 0's requests
        if self.signals.received:
            self.state.interrupted = True
            self.control.request_stop(self.signals.received)

    # ------------------------------------------------------------------ evaluations and history
    def _evaluate(self, train_metrics: dict[str, float]) -> None:
        """Evaluate, record the history entry, tell the callbacks, step a plateau scheduler."""
        eval_metrics = self.evaluate()
        self._record_history(train_metrics, eval_metrics)
        self.callbacks.call("on_evaluate", metrics=eval_metrics, step=self.state.global_step)
        rank_zero.agree_control(self.distributed, self.control, self.signals)  # early stopping, on every rank
        if eval_metrics:
            self._check_metric_names(list(eval_metrics))  # names a missing metric before any checkpoint
            if self.scheduler_interval == "evaluation":
                self.update_learning_rate(eval_metrics)

    def _record_history(self, train_metrics: dict[str, float], eval_metrics: dict[str, float]) -> None:
        state, entry = self.state, {"train": train_metrics, "eval": eval_metrics}
        state.history.append(entry)
        state.nb_evaluations, state.last_eval_step = state.nb_evaluations + 1, state.global_step
        self.history_file.append({"type": "eval", "step": state.global_step, "epoch": state.epoch, **entry})
        self.windows.reset_train()

    def _check_metric_names(self, available: list[str] | None) -> None:
        """Each eval metric the run needs is among ``available`` (None: not known yet, checked at the
        first evaluation): the checkpoint metric, a plateau scheduler's, the callbacks' own."""
        if available is None:
            return
        self.config.check_eval_metrics(available, plateau_scheduler=self.scheduler_interval == "evaluation")
        self.callbacks.check_metric_names(sorted({"loss", *available}))

    # ------------------------------------------------------------------ epochs
    def _enter_epoch(self, epoch: int) -> None:
        """Make ``epoch`` the current one (a no-op for the epoch under way)."""
        state = self.state
        if epoch == state.epoch:
            return  # the rest of an epoch begun earlier (a resumed run's)
        state.epoch, state.batch_in_epoch = epoch, 0
        if self.config.eval_strategy == "epoch":
            # Training metrics are per epoch, as medkit's, also in a loop written by hand around
            # training_epoch() (train() has already recorded them at the epoch's end).
            self.windows.reset_train()

    # ------------------------------------------------------------------ start, end, checkpoints
    def _start_or_resume(self, resume_from_checkpoint: str | Path | None) -> None:
        if resume_from_checkpoint is None:
            self.checkpoints.check_new_run()  # never over an earlier run's checkpoints
            self.history_file.truncate(0)  # a new run starts a new history file
        else:
            with rank_zero.resuming(self.distributed, self.checkpoints.resolve(resume_from_checkpoint)):
                resume_trainer(self, resume_from_checkpoint)  # nothing to resume from is an error, never a new run
        if self.config.retain_freed_memory:
            retain_freed_memory()

    def _report_stop(self) -> None:
        self.state.stop_reason = self.control.stop_reason
        if self.control.should_stop:
            logger.info("Training stopped at step %d: %s", self.state.global_step, self.state.stop_reason)
        if self.skipped_batches:
            logger.warning("%d batches were skipped for a non-finite loss", self.skipped_batches)

    def _write_checkpoint(self, folder: Path) -> None:
        self.component.save(folder)
        payload = {**trainer_payload(self), **self._rank_states}  # several processes: their number, random states
        write_checkpoint(folder, payload, self.config.to_dict(), self.optimizer, self.lr_scheduler)

    # ------------------------------------------------------------------ construction
    def _set_medkit_attributes(self, callback: TrainerCallback | Sequence[TrainerCallback] | None) -> None:
        config = self.config
        self.batch_size, self.nb_training_epochs = config.batch_size, config.nb_training_epochs
        self.dataloader_nb_workers = config.dataloader_nb_workers
        self.dataloader_drop_last = self.dataloader_pin_memory = False
        self.callback = DefaultPrinterCallback() if callback is None else callback
        self.callbacks = CallbackList(rank_zero.main_only(self.distributed, self.callback))  # they write, print

    def build_optimization(self) -> None:
        """The optimizer, the scheduler and when it steps, fp16's gradient scaler (again after a
        resume: the component's load may have replaced its parameters)."""
        config, builder = self.config, self.lr_scheduler_builder
        self.optimizer = build_optimizer(self.component, config.learning_rate, config.weight_decay)
        self.lr_scheduler = build_scheduler(builder, self.optimizer, self.state.max_steps)
        self.scheduler_interval = scheduler_interval(self.lr_scheduler, config.lr_scheduler_interval, builder)
        self.grad_scaler = grad_scaler(self.precision, self.device)
        self.gradient_sync = data_parallel.GradientSync(self.distributed, self.component, self.optimizer)
