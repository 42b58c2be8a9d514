"""The Trainer: a plain training loop around any TrainableComponent.

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
import yaml
from torch.utils.data import DataLoader

from medkit_exp.errors import ConfigError, DataError, NonFiniteLossError
from medkit_exp.training.batch import BatchData, EpochBatchSampler
from medkit_exp.training.callbacks import (
    CallbackList,
    DefaultPrinterCallback,
    Timer,
    TrainerControl,
    TrainerState,
)
from medkit_exp.training.checkpoint import (
    FORMAT_VERSION,
    TRAINER_CONFIG,
    TRAINER_STATE,
    CheckpointManager,
    checkpoint_name,
    load_trainer_state,
    resolve_checkpoint,
)
from medkit_exp.training.component import check_trainable_component, exposed_model
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.history import HistoryFile
from medkit_exp.training.loading import item_lengths, make_loader, preprocess_items
from medkit_exp.training.memory import retain_freed_memory
from medkit_exp.training.optim import build_optimizer
from medkit_exp.training.schedulers import build_scheduler, is_plateau
from medkit_exp.training.seed import rng_states, seed_everything, set_rng_states
from medkit_exp.training.signals import StopSignals

logger = logging.getLogger(__name__)


class Trainer:
    """Trains a component: medkit's constructor, a loop that reads top to bottom, callbacks for the rest.

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
        callbacks = [DefaultPrinterCallback()] if callback is None else callback
        self.callbacks = CallbackList(callbacks if isinstance(callbacks, (list, tuple)) else [callbacks])

        self.train_items = preprocess_items(component, train_data, "train_data", config.cache_preprocessed)
        if not self.train_items:
            raise DataError("train_data is empty: nothing to train on")
        self.eval_items = [] if eval_data is None else preprocess_items(
            component, eval_data, "eval_data", config.cache_preprocessed
        )
        if not self.eval_items and config.eval_strategy != "no":
            logger.warning("No evaluation data: no eval metrics; the last checkpoint is also the best")
        # The batch order of each epoch comes from this seed alone (resumable, see EpochBatchSampler).
        sampler_seed = config.seed if config.seed is not None else int(torch.randint(0, 2**31, ()).item())
        lengths = item_lengths(self.train_items) if config.group_by_length else None
        self.sampler = EpochBatchSampler(len(self.train_items), config.batch_size, True, sampler_seed, lengths)
        workers = config.dataloader_nb_workers
        self.train_loader = make_loader(self.train_items, component, workers, batch_sampler=self.sampler)
        eval_batch_size = config.eval_batch_size or config.batch_size
        self.eval_loader = (
            make_loader(self.eval_items, component, workers, batch_size=eval_batch_size) if self.eval_items else None
        )

        model = exposed_model(component)
        if config.compile:
            if model is None:
                raise ConfigError("compile", "needs a component that exposes its torch model as `model`")
            model.compile()
        self.lr_scheduler_builder = lr_scheduler_builder
        self.state = TrainerState(output_dir=str(self.output_dir))
        self.state.nb_batches_per_epoch = len(self.sampler)
        steps_per_epoch = math.ceil(len(self.sampler) / config.gradient_accumulation_steps)
        self.state.max_steps = steps_per_epoch * config.nb_training_epochs
        if config.max_steps is not None:
            self.state.max_steps = min(self.state.max_steps, config.max_steps)
        self._build_optimization()
        self.control = TrainerControl()
        self.checkpoints = CheckpointManager(
            self.output_dir / "checkpoints", config.keep_best_k, config.minimize_checkpoint_metric
        )
        known = [] if metrics_computer is None else getattr(metrics_computer, "metric_names", None)
        self._check_tracked_metrics(known)
        self.signals = StopSignals(config.handle_signals)
        self.history_file = HistoryFile(self.output_dir)
        self._reset_windows()

    # ------------------------------------------------------------------ public API
    @property
    def best_checkpoint(self) -> str | None:
        return self.state.best_checkpoint

    @property
    def last_checkpoint(self) -> str | None:
        return self.state.last_checkpoint

    def train(self, resume_from_checkpoint: str | Path | None = None) -> list[dict[str, dict[str, float]]]:
        """Run training (resuming from a checkpoint folder, or "last") and return the history."""
        if resume_from_checkpoint is None or not self._resume(resume_from_checkpoint):
            self.history_file.truncate(0)  # a new run starts a new history file
        self.callbacks.setup(self.state, self.control)
        if self.config.retain_freed_memory:
            retain_freed_memory()
        with self.signals.installed():
            self.callbacks.call("on_train_begin", config=self.config)
            try:
                self._train_loop()
            except BaseException as exception:
                self.callbacks.call("on_exception", exception=exception)
                raise
            self.callbacks.call("on_train_end")
        return self.state.history

    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_data`` now and return the metrics (loss and the computer's)."""
        if self.eval_loader is None:
            return {}
        return self._run_eval(self.eval_loader)

    # ------------------------------------------------------------------ the loop
    def _train_loop(self) -> None:
        config, state = self.config, self.state
        while state.global_step < state.max_steps and not self.control.should_stop:
            if state.batch_in_epoch >= state.nb_batches_per_epoch:  # the last epoch is complete
                state.batch_in_epoch = 0
            if state.batch_in_epoch == 0:
                state.epoch += 1
            if state.epoch > config.nb_training_epochs:
                break
            self.callbacks.call("on_epoch_begin", epoch=state.epoch)
            epoch_timer = Timer()
            self._train_epoch()
            metrics = state.history[-1] if state.history else {"train": {}, "eval": {}}
            self.callbacks.call("on_epoch_end", metrics=metrics, epoch=state.epoch, epoch_duration=epoch_timer.elapsed())
        self._finish()

    def _train_epoch(self) -> None:
        config, state = self.config, self.state
        self.sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
        batch_sizes = [len(b) for b in self.sampler.batches()]
        nb_batches, accumulation = state.nb_batches_per_epoch, config.gradient_accumulation_steps
        for input_batch in self.train_loader:
            index = state.batch_in_epoch
            self.callbacks.call("on_step_begin", step_idx=index, nb_batches=nb_batches, phase="train")
            window_start = index - index % accumulation
            window_size = min(accumulation, nb_batches - window_start)
            self._train_micro_batch(input_batch, window_size)
            self._window["samples"] += batch_sizes[index]
            state.batch_in_epoch += 1
            step_done = state.batch_in_epoch == window_start + window_size
            if step_done:
                self._optimizer_step()
            self.callbacks.call("on_step_end", step_idx=index, nb_batches=nb_batches, phase="train")
            if step_done and self._after_optimizer_step():
                return

    def _train_micro_batch(self, input_batch: BatchData, window_size: int) -> None:
        output, loss = self._forward(input_batch, eval_mode=False)
        loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            if self.config.on_nonfinite_loss == "error":
                state = self.state
                raise NonFiniteLossError(state.global_step + 1, state.epoch, state.batch_in_epoch, loss_value.item())
            self._skipped_batches += 1
            logger.warning("Skipping batch %d of epoch %d: non-finite loss", self.state.batch_in_epoch, self.state.epoch)
            return
        scaled = loss / window_size
        (self.grad_scaler.scale(scaled) if self.grad_scaler else scaled).backward()
        for window in (self._window, self._eval_window):
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
        if self.lr_scheduler is None or is_plateau(self.lr_scheduler):
            return  # ReduceLROnPlateau steps at evaluations
        epoch_ended = self.state.batch_in_epoch >= self.state.nb_batches_per_epoch
        if self.scheduler_interval == "step" or epoch_ended:
            self.lr_scheduler.step()

    def _after_optimizer_step(self) -> bool:
        """Logs, evaluations, saves and stop requests due after a step; True to leave the epoch.

        The checkpoint is the last thing that changes state at a step, so a run resumed from
        it continues exactly as the original would have.
        """
        config, state, control = self.config, self.state, self.control
        if state.global_step % config.logging_steps == 0:
            self._log()
        epoch_ended = state.batch_in_epoch >= state.nb_batches_per_epoch
        eval_due = (config.eval_strategy == "steps" and state.global_step % config.eval_steps == 0) or (
            config.eval_strategy == "epoch" and epoch_ended
        )
        if self.signals.received:
            state.interrupted = True
            control.request_stop(self.signals.received)
        if eval_due or control.should_evaluate:
            self._evaluate_and_checkpoint(force_save=control.should_save or state.interrupted)
        elif control.should_save or state.interrupted:
            self._save_checkpoint(metric=None)
        control.should_evaluate = control.should_save = False
        return control.should_stop or state.global_step >= state.max_steps

    def _finish(self) -> None:
        """A final evaluation and checkpoint, unless the current step already has them."""
        state, config = self.state, self.config
        state.stop_reason = self.control.stop_reason
        if self.control.should_stop:
            logger.info("Training stopped at step %d: %s", state.global_step, state.stop_reason)
        evaluated_now = state.last_eval_step == state.global_step
        if not evaluated_now and not state.interrupted:
            if config.eval_strategy != "no":
                self._evaluate_and_checkpoint(force_save=True)
                evaluated_now = True
            else:
                self._record_history({})
        if state.last_checkpoint is None or Path(state.last_checkpoint).name != checkpoint_name(state.global_step):
            metric = self._tracked_metric(state.history[-1]["eval"]) if evaluated_now else None
            self._save_checkpoint(metric)
        if self._skipped_batches:
            logger.warning("%d batches were skipped for a non-finite loss", self._skipped_batches)

    # ------------------------------------------------------------------ logging and evaluation
    def _log(self) -> None:
        window, elapsed = self._window, self._window_timer.elapsed()
        logs = {
            "loss": (window["loss"] / max(window["batches"], 1)).item() if window["batches"] else float("nan"),
            "learning_rate": self._step_lr,
            "epoch": self.state.epoch - 1 + self.state.batch_in_epoch / self.state.nb_batches_per_epoch,
            "samples_per_second": window["samples"] / elapsed if elapsed > 0 else 0.0,
            "steps_per_second": self.config.logging_steps / elapsed if elapsed > 0 else 0.0,
        }
        if self._grad_norm is not None:
            logs["grad_norm"] = float(self._grad_norm)
        self.history_file.append({"type": "log", "step": self.state.global_step, **logs})
        self.callbacks.call("on_log", logs=logs, step=self.state.global_step)
        self._window = self._new_window()
        self._window_timer.reset()

    def _evaluate_and_checkpoint(self, force_save: bool = False) -> None:
        eval_metrics = self.evaluate()
        self._record_history(eval_metrics)
        self.callbacks.call("on_evaluate", metrics=eval_metrics, step=self.state.global_step)
        metric = self._tracked_metric(eval_metrics)
        if is_plateau(self.lr_scheduler):
            self._step_plateau(eval_metrics)
        period = self.config.checkpoint_period
        if force_save or (period and self.state.nb_evaluations % period == 0):
            self._save_checkpoint(metric)

    def _record_history(self, eval_metrics: dict[str, float]) -> None:
        window = self._eval_window
        train = {"loss": (window["loss"] / window["batches"]).item()} if window["batches"] else {}
        if self.config.do_metrics_in_training and self.metrics_computer is not None and self._train_metric_data:
            train.update(self.metrics_computer.compute(dict(self._train_metric_data)))
        entry = {"train": train, "eval": eval_metrics}
        self.state.history.append(entry)
        self.state.nb_evaluations += 1
        self.state.last_eval_step = self.state.global_step
        self.history_file.append({"type": "eval", "step": self.state.global_step, "epoch": self.state.epoch, **entry})
        self._eval_window = self._new_window()
        self._train_metric_data = defaultdict(list)

    def _run_eval(self, loader: DataLoader) -> dict[str, float]:
        total_loss, nb_batches = torch.zeros(()), len(loader)
        metric_data: dict[str, list[Any]] = defaultdict(list)
        with torch.no_grad():
            for index, input_batch in enumerate(loader):
                self.callbacks.call("on_step_begin", step_idx=index, nb_batches=nb_batches, phase="eval")
                output, loss = self._forward(input_batch, eval_mode=True)
                total_loss += loss.detach().float().cpu()
                if self.metrics_computer is not None:
                    for key, values in self.metrics_computer.prepare_batch(output, input_batch).items():
                        metric_data[key].extend(values)
                self.callbacks.call("on_step_end", step_idx=index, nb_batches=nb_batches, phase="eval")
        metrics = {"loss": (total_loss / max(nb_batches, 1)).item()}
        if self.metrics_computer is not None:
            metrics.update(self.metrics_computer.compute(dict(metric_data)))
        return metrics

    def _tracked_metric(self, eval_metrics: dict[str, float]) -> float | None:
        """The checkpoint metric, failing with the available names if the computer lacks it."""
        if not eval_metrics:
            return None
        self._check_tracked_metrics(list(eval_metrics))
        return float(eval_metrics[self.config.checkpoint_metric])

    def _check_tracked_metrics(self, available: list[str] | None) -> None:
        if available is None:
            return  # unknown before the first evaluation; checked then, before any checkpoint
        available = sorted({"loss", *available})
        wanted = {"checkpoint_metric": self.config.checkpoint_metric}
        if is_plateau(self.lr_scheduler):
            wanted["metric_to_track_lr"] = self.config.metric_to_track_lr
        for cb in self.callbacks.callbacks:
            if isinstance(getattr(cb, "monitor", None), str):
                wanted[f"{type(cb).__name__}.metric"] = cb.monitor
        for key, name in wanted.items():
            if name not in available:
                raise ConfigError(key, f"eval metric {name!r} is never produced; available: {', '.join(available)}")

    def _step_plateau(self, eval_metrics: dict[str, float]) -> None:
        if not eval_metrics:
            return
        self._check_tracked_metrics(list(eval_metrics))
        self.lr_scheduler.step(eval_metrics[self.config.metric_to_track_lr])

    # ------------------------------------------------------------------ checkpoints and resume
    def _save_checkpoint(self, metric: float | None) -> None:
        if not self.eval_items and self.config.eval_strategy != "no":
            metric = None
        path = self.checkpoints.save(self.state.global_step, metric, self._write_checkpoint)
        self.state.last_checkpoint = str(path)
        best = self.checkpoints.path(self.checkpoints.best) or path
        self.state.best_checkpoint = str(best)
        best_record = next((r for r in self.checkpoints.records if r.name == best.name), None)
        self.state.best_metric = best_record.metric if best_record else None
        self.callbacks.call("on_save", checkpoint_dir=str(path))

    def _write_checkpoint(self, folder: Path) -> None:
        self.component.save(folder)
        payload = {
            "format_version": FORMAT_VERSION,
            "state": self.state.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "rng": rng_states(),
            "sampler_seed": self.sampler.seed,
            "windows": {"eval": self._eval_window, "log": self._window, "train_metric_data": dict(self._train_metric_data)},
            "history_lines": self.history_file.nb_lines,
            "callbacks": self.callbacks.state_dicts(),
            "skipped_batches": self._skipped_batches,
        }
        torch.save(payload, folder / TRAINER_STATE)
        with open(folder / TRAINER_CONFIG, "w", encoding="utf-8") as handle:
            yaml.safe_dump(self.config.to_dict(), handle, sort_keys=False, allow_unicode=True)

    def _resume(self, which: str | Path) -> bool:
        """Restore everything from a checkpoint; False when "last"/"best" finds none."""
        path = resolve_checkpoint(self.output_dir, which)
        if path is None:
            logger.warning("No checkpoint in %s to resume from: starting from scratch", self.output_dir)
            return False
        payload = load_trainer_state(path)
        logger.info("Resuming from %s (step %d)", path, payload["state"]["global_step"])
        self.component.load(path)
        self._build_optimization()  # load() may have replaced the model and its parameters
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.lr_scheduler is not None and payload["lr_scheduler"] is not None:
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
        self._eval_window, self._window = windows["eval"], windows["log"]
        self._train_metric_data = defaultdict(list, windows["train_metric_data"])
        self._skipped_batches = payload["skipped_batches"]
        self.history_file.truncate(payload["history_lines"])
        self.callbacks.load_state_dicts(payload["callbacks"])
        set_rng_states(payload["rng"])
        return True

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

    def _forward(self, input_batch: BatchData, eval_mode: bool) -> tuple[BatchData, torch.Tensor]:
        input_batch = input_batch.to_device(self.device)
        with self._autocast():
            output, loss = self.component.forward(input_batch, return_loss=True, eval_mode=eval_mode)
        if loss is None:
            raise ValueError("The component did not return a 'loss' from the input.")
        return output, loss

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
        self._window = self._new_window()
        self._eval_window = self._new_window()
        self._train_metric_data: dict[str, list[Any]] = defaultdict(list)
        self._window_timer = Timer()
        self._grad_norm: torch.Tensor | None = None
        self._step_lr = self.optimizer.param_groups[0]["lr"]
        self._skipped_batches = 0
