"""Training core: the Trainer, its config, protocols, callbacks, checkpoints and schedulers.

Signature-compatible with ``medkit.training`` (medkit 0.17): code written against medkit's
``TrainableComponent``, ``TrainerConfig``, ``Trainer``, ``TrainerCallback``, ``BatchData`` and
``MetricsComputer`` runs unchanged against these.
"""

from medkit_exp.training.batch import BatchData, EpochBatchSampler
from medkit_exp.training.callbacks import (
    DefaultPrinterCallback,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from medkit_exp.training.checkpoint import CheckpointManager, load_trainer_state, resolve_checkpoint
from medkit_exp.training.component import TrainableComponent, check_trainable_component
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.metrics import MetricsComputer
from medkit_exp.training.optim import make_adamw, param_groups_with_weight_decay
from medkit_exp.training.schedulers import (
    ReduceLROnPlateauBuilder,
    WarmupDecaySchedulerBuilder,
    make_scheduler_builder,
)
from medkit_exp.training.seed import seed_everything
from medkit_exp.training.trainer import Trainer

__all__ = [
    "BatchData",
    "CheckpointManager",
    "DefaultPrinterCallback",
    "EarlyStoppingCallback",
    "EpochBatchSampler",
    "MetricsComputer",
    "ReduceLROnPlateauBuilder",
    "TrainableComponent",
    "Trainer",
    "TrainerCallback",
    "TrainerConfig",
    "TrainerControl",
    "TrainerState",
    "WarmupDecaySchedulerBuilder",
    "check_trainable_component",
    "load_trainer_state",
    "make_adamw",
    "make_scheduler_builder",
    "param_groups_with_weight_decay",
    "resolve_checkpoint",
    "seed_everything",
]
