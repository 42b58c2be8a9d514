"""Learning-rate scheduler builders (medkit's ``lr_scheduler_builder(optimizer)`` contract).

A builder is any callable taking the optimizer. Builders here also take
``num_training_steps`` (the Trainer passes it to builders that accept it) and carry an
``interval`` attribute: "step" (stepped after every optimizer step) or "epoch".

>>> builder = make_scheduler_builder("linear", warmup_ratio=0.1)
>>> builder.interval
'step'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medkit_exp.errors import ConfigError
from medkit_exp.training.config import check_choice, check_number

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: medkit's ``lr_scheduler_builder``: called with the optimizer (ours also take
#: ``num_training_steps``), it returns the scheduler.
SchedulerBuilder = Callable[..., Any]

DECAYS = ("linear", "cosine", "constant")
SCHEDULERS = ("none", *DECAYS, "plateau")


class WarmupDecaySchedulerBuilder:
    """Linear warmup (``warmup_steps`` or ``warmup_ratio`` of all steps), then a decay to
    ``min_lr_ratio`` of the initial rate: "linear", "cosine" or "constant"."""

    interval = "step"

    def __init__(
        self, decay: str = "linear", warmup_steps: int = 0, warmup_ratio: float = 0.0, min_lr_ratio: float = 0.0
    ):
        # Checked here, not when the first step runs: torch and numpy never see a bad value.
        check_choice("scheduler.decay", decay, DECAYS)
        check_number("scheduler.warmup_steps", warmup_steps, 0, integer=True)
        check_number("scheduler.warmup_ratio", warmup_ratio, 0.0)
        if warmup_ratio >= 1.0:
            raise ConfigError("scheduler.warmup_ratio", f"must be in [0, 1), got {warmup_ratio}")
        if warmup_steps and warmup_ratio:
            raise ConfigError("scheduler.warmup_steps", "give warmup_steps or warmup_ratio, not both")
        check_number("scheduler.min_lr_ratio", min_lr_ratio, 0.0, 1.0)
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, optimizer: torch.optim.Optimizer, num_training_steps: int | None = None) -> Any:
        import torch

        if num_training_steps is None:
            raise ConfigError("scheduler", f"{self.decay} decay needs the number of training steps")
        warmup = self.warmup_steps or int(math.ceil(self.warmup_ratio * num_training_steps))
        factor = _lr_factor(self.decay, warmup, num_training_steps, self.min_lr_ratio)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _lr_factor:  # a class, not a closure, so the scheduler state can be pickled
    def __init__(self, decay: str, warmup: int, total: int, floor: float):
        self.decay, self.warmup, self.total, self.floor = decay, warmup, max(total, 1), floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.floor + (1.0 - self.floor) * shape


class ReduceLROnPlateauBuilder:
    """``ReduceLROnPlateau`` stepped at every evaluation with ``TrainerConfig.metric_to_track_lr``."""

    interval = "epoch"

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 1, threshold: float = 1e-4):
        check_choice("scheduler.mode", mode, ("min", "max"))
        # factor 1 would never lower the rate, >1 would raise it, <=0 would zero or flip it.
        check_number("scheduler.factor", factor, 0.0, strict=True)
        if factor >= 1.0:
            raise ConfigError("scheduler.factor", f"must be in (0, 1): the rate is multiplied by it; got {factor!r}")
        check_number("scheduler.patience", patience, 0, integer=True)
        check_number("scheduler.threshold", threshold, 0.0)
        self.kwargs = {"mode": mode, "factor": factor, "patience": patience, "threshold": threshold}

    def __call__(self, optimizer: torch.optim.Optimizer) -> Any:
        import torch

        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **self.kwargs)


def make_scheduler_builder(name: str, **kwargs: Any) -> Any | None:
    """A builder from its config name: none, linear, cosine, constant or plateau."""
    if name == "none":
        return None
    if name in DECAYS:
        return WarmupDecaySchedulerBuilder(decay=name, **kwargs)
    if name == "plateau":
        return ReduceLROnPlateauBuilder(**kwargs)
    raise ConfigError("scheduler.name", f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")


def is_plateau(scheduler: Any) -> bool:
    import torch

    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def build_scheduler(builder: Any | None, optimizer: torch.optim.Optimizer, num_training_steps: int) -> Any | None:
    """Call a scheduler builder: ours take ``num_training_steps``, medkit-style ones only the optimizer."""
    from medkit_exp.training.component import accepts_argument

    if builder is None:
        return None
    if accepts_argument(builder, "num_training_steps"):
        return builder(optimizer, num_training_steps=num_training_steps)
    return builder(optimizer)


def load_scheduler_state(scheduler: Any | None, saved: dict[str, Any] | None) -> None:
    """Restore a resumed run's scheduler; a scheduler on one side only restarts, with a warning."""
    if (scheduler is None) != (saved is None):
        without, with_ = ("without", "with") if scheduler is None else ("with", "without")
        logger.warning("Resuming %s a learning-rate scheduler from a checkpoint saved %s one: the schedule restarts",
                       without, with_)
    elif scheduler is not None:
        scheduler.load_state_dict(saved)


def scheduler_interval(scheduler: Any | None, configured: str | None, builder: Any | None) -> str | None:
    """When ``scheduler`` steps: after each optimizer "step", each "epoch" (the configured interval,
    else the builder's, else medkit's epoch), or each "evaluation" for a plateau scheduler (on its
    metric); None without a scheduler."""
    if scheduler is None:
        return None
    if is_plateau(scheduler):
        return "evaluation"
    return configured or getattr(builder, "interval", "epoch")
