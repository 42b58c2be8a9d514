"""Training core: the Trainer, its config, protocols, callbacks, checkpoints and schedulers.

Signature-compatible with ``medkit.training`` (medkit 0.17): code written against medkit's
``TrainableComponent``, ``TrainerConfig``, ``Trainer``, ``TrainerCallback``, ``BatchData`` and
``MetricsComputer`` runs unchanged against these.

Exports are resolved on first use, so importing a light part (e.g. ``TrainerConfig`` for a
config schema) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchData": "batch",
    "EpochBatchSampler": "batch",
    "DefaultPrinterCallback": "printer",
    "EarlyStoppingCallback": "callbacks",
    "TrainerCallback": "callbacks",
    "TrainerControl": "callbacks",
    "TrainerState": "callbacks",
    "CheckpointManager": "checkpoint",
    "check_resume_choice": "checkpoint",
    "load_trainer_state": "checkpoint",
    "resolve_checkpoint": "checkpoint",
    "TrainableComponent": "component",
    "check_trainable_component": "component",
    "TrainerConfig": "config",
    "MetricsComputer": "metrics",
    "make_adamw": "optim",
    "param_groups_with_weight_decay": "optim",
    "ReduceLROnPlateauBuilder": "schedulers",
    "WarmupDecaySchedulerBuilder": "schedulers",
    "make_scheduler_builder": "schedulers",
    "seed_everything": "seed",
    "Trainer": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"medkit_exp.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
