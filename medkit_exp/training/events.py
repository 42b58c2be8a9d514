"""Callbacks: named events of a run, the state they see and the control they steer it with.

Events keep medkit's names, argument names, calling convention and order:
``on_train_begin(config=)``, then per epoch ``on_epoch_begin(epoch=)``, the training steps
``on_step_begin(step, nb_batches=, phase="train")`` / ``on_step_end(...)`` (the step index is
positional, as medkit passes it), the evaluation steps (``phase="eval"``),
``on_epoch_end(metrics=, epoch=, epoch_duration=)``, then ``on_save(checkpoint_dir=)`` for the
epoch's checkpoint; ``on_train_end()`` last. Our own events, ``on_log``, ``on_evaluate`` and
``on_exception``, are called with keywords only. A callback written for medkit (any object
with some of these methods) works as it is: the Trainer only calls the methods a callback has.
Unlike medkit's, ``on_save`` comes once the checkpoint is written, so it can be read there.

Callbacks derived from :class:`TrainerCallback` also get ``self.state`` (a read-only view of
the run: global step, epoch, best checkpoint...; setting a field raises AttributeError) and
``self.control``, through which they ask the loop to stop, save or evaluate::

    class StopAtStep(TrainerCallback):
        def on_log(self, logs, step):
            if step >= 100:
                self.control.request_stop("enough")

A callback that must survive a resume defines ``state_dict()`` / ``load_state_dict(state)``;
its state is stored in every checkpoint under its ``state_key`` (default: its class name).
One that needs an eval metric defines ``check_metric_names(names)`` and raises ConfigError
when its metric is not among them: the Trainer calls it before training when the metrics
computer declares its names, and at each evaluation.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallbackList", "ReadOnlyState", "TrainerCallback", "TrainerControl", "TrainerState"]

logger = logging.getLogger(__name__)

EVENTS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_step_begin",
    "on_step_end",
    "on_log",
    "on_evaluate",
    "on_save",
    "on_exception",
)


@dataclass
class TrainerState:
    """Where the run stands; saved in every checkpoint and restored on resume."""

    output_dir: str = ""
    epoch: int = 0  # current epoch, from 1
    global_step: int = 0  # optimizer steps done
    batch_in_epoch: int = 0  # micro-batches done in the current epoch
    nb_batches_per_epoch: int = 0
    max_steps: int = 0  # optimizer steps the run will do in all
    nb_evaluations: int = 0
    last_eval_step: int = -1
    history: list[dict[str, dict[str, float]]] = field(default_factory=list)
    best_metric: float | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    stop_reason: str | None = None  # why the run stopped early: "early_stopping", "SIGTERM", ...
    interrupted: bool = False  # stopped by a signal (SIGTERM/SIGINT)
    precision: str = "32"  # what this run computes in: TrainerConfig.precision with "auto" resolved

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def restore(self, saved: dict[str, Any]) -> None:
        """Where a checkpoint's run stood; ``output_dir`` and ``max_steps`` stay this run's, and
        the saved run's stop (a signal's, say) is not this one's."""
        for key, value in saved.items():
            if key not in ("output_dir", "max_steps", "precision"):
                setattr(self, key, value)
        self.stop_reason, self.interrupted = None, False


class ReadOnlyState:
    """What callbacks see of the :class:`TrainerState`: every field, live, none settable.

    >>> view = ReadOnlyState(TrainerState(global_step=3))
    >>> view.global_step
    3
    >>> view.global_step = 4
    Traceback (most recent call last):
    ...
    AttributeError: the trainer state is read-only for callbacks (global_step): ask the loop through self.control
    """

    __slots__ = ("_state",)

    def __init__(self, state: TrainerState):
        object.__setattr__(self, "_state", state)

    def __getattr__(self, name: str) -> Any:
        if name == "_state":  # not set yet (an object being unpickled): never recurse
            raise AttributeError(name)
        return getattr(self._state, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"the trainer state is read-only for callbacks ({name}): ask the loop through self.control"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Copied or pickled (a callback sending it to another process), it stays a view.
        return ReadOnlyState, (self._state,)

    def __repr__(self) -> str:
        return f"ReadOnlyState({self._state!r})"


class TrainerControl:
    """Requests from callbacks to the loop, honoured at the next step boundary."""

    def __init__(self) -> None:
        self.should_stop = False
        self.should_save = False
        self.should_evaluate = False
        self.stop_reason: str | None = None

    def request_stop(self, reason: str = "requested by a callback") -> None:
        """Stop after the current optimizer step (a last checkpoint is saved)."""
        self.should_stop = True
        self.stop_reason = self.stop_reason or reason

    def request_save(self) -> None:
        """Save a checkpoint after the current optimizer step."""
        self.should_save = True

    def request_evaluate(self) -> None:
        """Evaluate after the current optimizer step."""
        self.should_evaluate = True

    def clear_requests(self) -> None:
        """Called by the loop once it has honoured the save and evaluate requests of a step."""
        self.should_save = self.should_evaluate = False


class TrainerCallback:
    """Base class of callbacks: every event is a no-op; override those you need."""

    state: ReadOnlyState
    control: TrainerControl

    def setup(self, state: ReadOnlyState, control: TrainerControl) -> None:
        """Called by the Trainer before ``on_train_begin``."""
        self.state = state
        self.control = control

    def on_train_begin(self, config: Any) -> None:
        """Training starts (also when resuming)."""

    def on_train_end(self) -> None:
        """Training ended, normally or through a stop request (not an exception)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """An epoch starts (epochs count from 1)."""

    def on_epoch_end(self, metrics: dict[str, dict[str, float]], epoch: int, epoch_duration: float) -> None:
        """An epoch ended; ``metrics`` is the last ``{"train": ..., "eval": ...}`` entry."""

    def on_step_begin(self, step_idx: int, nb_batches: int, phase: str) -> None:
        """A batch of ``phase`` ("train" or "eval") starts; ``step_idx`` counts from 0."""

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        """A batch of ``phase`` ended."""

    def on_log(self, logs: dict[str, float], step: int) -> None:
        """Training logs (loss, learning_rate, grad_norm, throughput) at optimizer step ``step``."""

    def on_evaluate(self, metrics: dict[str, float], step: int) -> None:
        """Evaluation metrics at optimizer step ``step`` (before the checkpoint is written)."""

    def on_save(self, checkpoint_dir: str) -> None:
        """A checkpoint was written to ``checkpoint_dir``."""

    def on_exception(self, exception: BaseException) -> None:
        """Training is failing with ``exception`` (re-raised after the callbacks)."""

    def check_metric_names(self, names: list[str]) -> None:
        """Raise ConfigError if an eval metric this callback needs is not among ``names``."""


class CallbackList:
    """Dispatches events to callbacks, calling only the methods each one defines."""

    def __init__(self, callbacks: Sequence[object]):
        self.callbacks = list(callbacks)
        # Resolve methods once: the step events run on every batch.
        self._handlers = {
            event: [_adapted(event, getattr(cb, event)) for cb in self.callbacks if callable(getattr(cb, event, None))]
            for event in EVENTS
        }

    def setup(self, state: TrainerState, control: TrainerControl) -> None:
        """Give every callback that takes them a read-only view of ``state`` and ``control``."""
        view = ReadOnlyState(state)
        for cb in self.callbacks:
            if callable(getattr(cb, "setup", None)):
                cb.setup(view, control)

    def check_metric_names(self, names: list[str]) -> None:
        """Each callback's own check of the eval metrics it needs (ConfigError naming its key)."""
        for cb in self.callbacks:
            if callable(getattr(cb, "check_metric_names", None)):
                cb.check_metric_names(names)

    def call(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Call ``event`` on every callback that has it, with medkit's convention: the step
        events get the step positionally (``on_step_begin(step, nb_batches=..., phase=...)``),
        every other argument by keyword."""
        for handler in self._handlers[event]:
            handler(*args, **kwargs)

    def state_dicts(self) -> dict[str, Any]:
        return {
            _state_key(cb): cb.state_dict() for cb in self.callbacks if callable(getattr(cb, "state_dict", None))
        }

    def load_state_dicts(self, states: dict[str, Any]) -> None:
        for cb in self.callbacks:
            key = _state_key(cb)
            if key in states and callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(states[key])


def _adapted(event: str, handler: Any) -> Any:
    """The handler, called with ``epoch_time=`` where it names on_epoch_end's duration so.

    medkit's base ``TrainerCallback.on_epoch_end`` names it ``epoch_time`` while medkit's
    Trainer passes ``epoch_duration=``: a medkit callback that inherits that method fails under
    medkit with a TypeError; here it runs.
    """
    if event != "on_epoch_end":
        return handler
    try:
        parameters = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return handler
    if "epoch_duration" in parameters or "epoch_time" not in parameters:
        return handler
    return lambda metrics, epoch, epoch_duration: handler(metrics=metrics, epoch=epoch, epoch_time=epoch_duration)


def _state_key(callback: Any) -> str:
    return getattr(callback, "state_key", type(callback).__name__)
