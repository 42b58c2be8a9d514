"""TrainerConfig: medkit's fields and defaults, plus what a mature trainer needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from medkit_exp.errors import ConfigError

EVAL_STRATEGIES = ("epoch", "steps", "no")
SCHEDULER_INTERVALS = ("epoch", "step")
PRECISIONS = ("32", "bf16", "fp16", "auto")
NONFINITE_POLICIES = ("error", "skip")
DISTRIBUTED_BACKENDS = ("auto", "gloo", "nccl")
#: The largest integer a setting may hold: torch and numpy take 64-bit integers (a larger one
#: fails deep inside them, long after the configuration was read).
MAX_INT = 2**63 - 1
#: Seeds: numpy takes [0, 2**32).
MAX_SEED = 2**32 - 1
#: medkit's message when a plateau scheduler's metric is missing
PLATEAU_METRIC_MISSING = "Learning scheduler needs an eval metric to update the learning rate, '{}' was not found"


@dataclass
class TrainerConfig:
    """Trainer configuration.

    The first twelve fields are medkit's, with medkit's defaults; every field after them
    defaults to medkit's behaviour where medkit had one.

    Parameters
    ----------
    output_dir: folder of the run: checkpoints, ``history.jsonl`` (created with its parents).
    learning_rate: initial learning rate, passed to ``component.configure_optimizer``.
    nb_training_epochs: number of epochs (``max_steps`` may stop earlier).
    dataloader_nb_workers: DataLoader worker processes (0: load in the main process).
    batch_size: training batch size per process (micro-batch, before gradient accumulation); the
        global batch of an optimizer step is ``batch_size x processes x gradient_accumulation_steps``.
    seed: seeds python, numpy and torch at construction and orders the batches of each epoch.
    gradient_accumulation_steps: micro-batches per optimizer step.
    do_metrics_in_training: also run the metrics computer on training batches.
    metric_to_track_lr: eval metric given to ``ReduceLROnPlateau``.
    checkpoint_period: save every N evaluations (epochs by default); 0 saves only the last.
    checkpoint_metric: eval metric that ranks checkpoints.
    minimize_checkpoint_metric: lower ``checkpoint_metric`` is better.
    max_steps: stop after this many optimizer steps (None: run all epochs).
    eval_strategy: "epoch" (medkit), "steps" (every ``eval_steps`` optimizer steps) or "no".
    eval_steps: optimizer steps between evaluations when ``eval_strategy="steps"``.
    eval_batch_size: evaluation batch size per process (None: ``batch_size``).
    logging_steps: optimizer steps between ``on_log`` events (loss, lr, grad norm, throughput).
    lr_scheduler_interval: step the scheduler per "epoch" (medkit) or per optimizer "step";
        None takes the builder's ``interval`` attribute if it has one, else "epoch".
    max_grad_norm: clip the gradient norm to this value (None: no clipping).
    weight_decay: if > 0, the optimizer of ``configure_optimizer`` is rebuilt with two parameter
        groups so biases and LayerNorm weights get no decay (needs ``component.model``).
    precision: "32", "bf16" (autocast, CPU or CUDA), "fp16" (autocast and grad scaler, CUDA) or
        "auto": "bf16" where the component's device computes in bfloat16 natively (CUDA GPUs that
        support it, CPUs with AVX-512 BF16 or AMX), "32" elsewhere; the Trainer's ``precision``
        attribute holds the one used (see :func:`medkit_exp.training.precision.resolve_precision`).
    compile: ``torch.compile`` the component's model in place.
    keep_best_k: number of best checkpoints kept besides the last one.
    deterministic: ask torch for deterministic algorithms (slower on GPU).
    on_nonfinite_loss: "error" stops with the step named; "skip" skips the batch and counts it.
    group_by_length: batch items of similar length together (needs ``input_ids`` or ``length``).
    cache_preprocessed: preprocess the data once, not every epoch.
    handle_signals: on SIGTERM/SIGINT, save a checkpoint and stop cleanly.
    retain_freed_memory: with glibc, keep memory freed between steps in the process instead of
        returning it to the OS and faulting it in again at the next step (process-wide, lasts
        after training; see :mod:`medkit_exp.training.memory`).
    distributed_backend: under torchrun, the process group's backend when the Trainer starts it:
        "auto" (NCCL on CUDA, gloo on CPU), "gloo" or "nccl" (refused without CUDA); see
        :mod:`medkit_exp.training.distributed`.
    distributed_timeout_s: under torchrun, how long a collective waits for the other processes
        before failing (a process that died without closing its connections).
    num_threads: torch's CPU threads for the run's process (``torch.set_num_threads``), set by the
        Trainer (and by the application earlier, before the model loads); None: what torch
        chooses (one per core). Fewer than the cores when other jobs share them.
    max_batch_tokens: also bound each training batch's padded size (rows x longest length) by this
        budget, besides ``batch_size`` items; needs ``group_by_length``. Batches are cut from the
        epoch's items sorted by length, so their number is the same every epoch; an item over the
        budget forms a batch alone (counted in a warning). Not with data-parallel training. None:
        batches of ``batch_size`` items (see :class:`medkit_exp.training.batch.EpochBatchSampler`).
    """

    output_dir: str
    learning_rate: float = 1e-5
    nb_training_epochs: int = 3
    dataloader_nb_workers: int = 0
    batch_size: int = 1
    seed: int | None = None
    gradient_accumulation_steps: int = 1
    do_metrics_in_training: bool = False
    metric_to_track_lr: str = "loss"
    checkpoint_period: int = 1
    checkpoint_metric: str = "loss"
    minimize_checkpoint_metric: bool = True
    max_steps: int | None = None
    eval_strategy: str = "epoch"
    eval_steps: int | None = None
    eval_batch_size: int | None = None
    logging_steps: int = 50
    lr_scheduler_interval: str | None = None
    max_grad_norm: float | None = None
    weight_decay: float = 0.0
    precision: str = "32"
    compile: bool = False
    keep_best_k: int = 1
    deterministic: bool = False
    on_nonfinite_loss: str = "error"
    group_by_length: bool = False
    cache_preprocessed: bool = True
    handle_signals: bool = True
    retain_freed_memory: bool = True
    distributed_backend: str = "auto"
    distributed_timeout_s: float = 1800.0
    num_threads: int | None = None
    max_batch_tokens: int | None = None  # last: the fields' positions before it stay as they were

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field and what is allowed."""
        _at_least("learning_rate", self.learning_rate, 0.0, strict=True)
        _at_least("nb_training_epochs", self.nb_training_epochs, 1)
        _at_least("dataloader_nb_workers", self.dataloader_nb_workers, 0)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        _at_least("checkpoint_period", self.checkpoint_period, 0)
        _at_least("logging_steps", self.logging_steps, 1)
        _at_least("keep_best_k", self.keep_best_k, 0)
        _at_least("weight_decay", self.weight_decay, 0.0)
        if self.seed is not None:
            check_number("seed", self.seed, 0, MAX_SEED, integer=True)
        for key in ("checkpoint_metric", "metric_to_track_lr"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(key, f"must name a metric, got {getattr(self, key)!r}")
        if self.max_steps is not None:
            _at_least("max_steps", self.max_steps, 1)
        if self.eval_batch_size is not None:
            _at_least("eval_batch_size", self.eval_batch_size, 1)
        if self.max_batch_tokens is not None:
            _at_least("max_batch_tokens", self.max_batch_tokens, 1)
            if not self.group_by_length:
                raise ConfigError("max_batch_tokens", "needs group_by_length=true (batches are cut from items sorted by length)")
        if self.max_grad_norm is not None:
            _at_least("max_grad_norm", self.max_grad_norm, 0.0, strict=True)
        _one_of("eval_strategy", self.eval_strategy, EVAL_STRATEGIES)
        _one_of("precision", str(self.precision), PRECISIONS)
        _one_of("on_nonfinite_loss", self.on_nonfinite_loss, NONFINITE_POLICIES)
        _one_of("distributed_backend", self.distributed_backend, DISTRIBUTED_BACKENDS)
        _at_least("distributed_timeout_s", self.distributed_timeout_s, 0.0, strict=True)
        if self.num_threads is not None:
            _at_least("num_threads", self.num_threads, 1)
        if self.lr_scheduler_interval is not None:
            _one_of("lr_scheduler_interval", self.lr_scheduler_interval, SCHEDULER_INTERVALS)
        if self.eval_strategy == "steps":
            if self.eval_steps is None:
                raise ConfigError("eval_steps", "is required when eval_strategy='steps'")
            _at_least("eval_steps", self.eval_steps, 1)
        if not self.output_dir:
            raise ConfigError("output_dir", "must be a folder path, got an empty value")

    def check_eval_metrics(self, available: list[str], plateau_scheduler: bool) -> None:
        """The metrics this config names are among the ``available`` eval metrics:
        ``checkpoint_metric``, and ``metric_to_track_lr`` for a plateau scheduler."""
        lead = f"Checkpoint metric '{self.checkpoint_metric}' not found"
        check_metric_name("checkpoint_metric", self.checkpoint_metric, available, lead=lead)
        if plateau_scheduler:
            lead = PLATEAU_METRIC_MISSING.format(self.metric_to_track_lr)
            check_metric_name("metric_to_track_lr", self.metric_to_track_lr, available, lead=lead)

    def plateau_metric(self, eval_metrics: dict[str, float]) -> float:
        """The value of ``metric_to_track_lr`` among ``eval_metrics``, for a plateau scheduler."""
        name = self.metric_to_track_lr
        if name not in eval_metrics:
            available = ", ".join(sorted(eval_metrics))
            raise ConfigError("metric_to_track_lr", f"available: {available}", lead=PLATEAU_METRIC_MISSING.format(name))
        return eval_metrics[name]

    def optimizer_steps(self, nb_batches_per_epoch: int) -> int:
        """The optimizer steps of the run: every epoch's (an accumulation window never crosses
        epochs), or ``max_steps`` if fewer.

        >>> TrainerConfig(output_dir="run", nb_training_epochs=2, gradient_accumulation_steps=3).optimizer_steps(16)
        12
        """
        per_epoch = math.ceil(nb_batches_per_epoch / self.gradient_accumulation_steps)
        total = per_epoch * self.nb_training_epochs
        return total if self.max_steps is None else min(total, self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``output_dir`` (as medkit's)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "output_dir"}


def check_number(
    key: str, value: Any, minimum: float | None = None, maximum: float | None = None,
    strict: bool = False, integer: bool = False,
) -> None:
    """A finite number in ``[minimum, maximum]`` (``minimum`` excluded when ``strict``); an integer
    also within 64 bits. Raises :class:`ConfigError` naming ``key``.

    >>> check_number("lr", float("nan"), 0.0, strict=True)
    Traceback (most recent call last):
    ...
    medkit_exp.errors.ConfigError: config key 'lr': must be a finite number, got nan
    """
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        relation = ">" if strict else ">="
        raise ConfigError(key, f"must be {relation} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be <= {maximum}, got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ConfigError(key, f"must be at most {MAX_INT} in absolute value, got {value!r}")


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """``value`` is one of ``allowed``; the message names them (and the nearest one)."""
    if value not in allowed:
        import difflib

        near = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {value!r}{hint}")


def check_metric_name(key: str, name: str, available: list[str], lead: str | None = None) -> None:
    """The eval metric ``name`` that setting ``key`` needs is among ``available`` (the loss always is).

    >>> check_metric_name("metric", "f1", ["accuracy"])
    Traceback (most recent call last):
    ...
    medkit_exp.errors.ConfigError: config key 'metric': eval metric 'f1' is never produced; available: accuracy, loss
    """
    names = sorted({"loss", *available})
    if name not in names:
        raise ConfigError(key, f"eval metric {name!r} is never produced; available: {', '.join(names)}", lead=lead)


def _at_least(key: str, value: Any, minimum: float, strict: bool = False) -> None:
    check_number(key, value, minimum, strict=strict, integer=isinstance(minimum, int) and not strict)


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    check_choice(key, value, allowed)
